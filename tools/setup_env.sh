#!/usr/bin/env bash
# Installs everything sase_mm needs into the current Python ($PYTHON, default
# python3), from a bare machine. Idempotent: when a working install is found
# (mmcv.ops included) it only checks and returns within seconds.
set -euo pipefail
PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

TORCH=2.14.1
TORCHVISION=0.29.1
MMENGINE=0.10.7
MMCV=2.1.0
MMDET=3.3.0
MMPRETRAIN=1.2.0
RUFF=0.17.5

check() {
    # Exit 0 only when every pinned package imports and mmcv's compiled ops run
    # (ninja: torch builds sase_mm's own kernels with it).
    "$PY" - "$ROOT" <<PYEOF 2>/dev/null
import os, sys
import torch, torchvision, mmengine, mmcv, mmdet, mmpretrain
import pycocotools, pytest, sklearn, matplotlib, pkg_resources, ninja
import pytorch_grad_cam, onnx, onnxruntime, xdist
from mmcv.ops import nms
want = {torch: '$TORCH', torchvision: '$TORCHVISION', mmengine: '$MMENGINE',
        mmcv: '$MMCV', mmdet: '$MMDET', mmpretrain: '$MMPRETRAIN'}
for mod, ver in want.items():
    assert mod.__version__.split('+')[0] == ver, (mod.__name__, mod.__version__)
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
keep = nms(boxes, torch.tensor([0.9, 0.8]), 0.5)[1]
assert keep.tolist() == [0], keep
import subprocess  # the linter of make lint
ruff = subprocess.run([sys.executable, '-m', 'ruff', '--version'],
                      capture_output=True, text=True).stdout.split()
assert ruff[-1:] == ['$RUFF'], ruff
PYEOF
}

check_self() {
    # The editable install must point at this checkout (CI clones afresh),
    # and `_base_ = 'sase_mm::...'` must resolve to its configs (a re-clone
    # or `git clean -xfd` under an old install must not break it); run from
    # / so the checkout itself is not on sys.path.
    (cd / && "$PY" - "$ROOT" <<'PYEOF' 2>/dev/null
import os, sys, tempfile
import sase_mm
root = os.path.realpath(sys.argv[1])
assert os.path.realpath(os.path.dirname(sase_mm.__file__)) == root + '/sase_mm'
from mmengine.config import Config
with tempfile.TemporaryDirectory() as tmp:
    child = os.path.join(tmp, 'child.py')
    with open(child, 'w') as f:
        f.write("_base_ = 'sase_mm::search/sase_r8_digits.py'\n")
    assert Config.fromfile(child).model.type == 'sase_mm.DARTSSearch'
PYEOF
    )
}

PIP=("$PY" -m pip install --disable-pip-version-check --no-input)

if ! check; then
    echo "[setup] installing the OpenMMLab stack (first run only; ~5 min on 2 cores)"
    # torch first and pinned: unpinned, pip pulls several GB of CUDA wheels.
    "${PIP[@]}" "setuptools<81" wheel ninja psutil \
        "torch==$TORCH" "torchvision==$TORCHVISION"
    "${PIP[@]}" "mmengine==$MMENGINE" "pycocotools>=2.0.11" opencv-python \
        -r requirements/runtime.txt -r requirements/tests.txt
    if ! "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV'" 2>/dev/null; then
        # PyPI ships mmcv as source only: build it with CPU ops. torch 2.14's
        # headers need C++20 while mmcv's setup.py asks for C++17, so a compiler
        # wrapper raises the standard at build time (no installed file patched).
        wrap=$(mktemp -d)
        printf '#!/bin/sh\nfor a in "$@"; do [ "$a" = "-std=c++17" ] && a="-std=c++20"; set -- "$@" "$a"; shift; done\nexec g++ "$@"\n' > "$wrap/cxx20"
        chmod +x "$wrap/cxx20"
        CXX="$wrap/cxx20" MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
            CFLAGS="-DNDEBUG -g0 -fwrapv -O3 -Wall" \
            "${PIP[@]}" --no-build-isolation "mmcv==$MMCV"
        rm -rf "$wrap"
    fi
    "${PIP[@]}" "mmdet==$MMDET" "mmpretrain==$MMPRETRAIN"
    check || { echo "[setup] the installed stack does not work; see the errors above" >&2; exit 1; }
fi
if ! check_self; then
    echo "[setup] installing sase_mm from this checkout (editable)"
    "${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT" >/dev/null
    check_self || { echo "[setup] sase_mm:: configs do not resolve from $ROOT (see sase_mm/.mim)" >&2; exit 1; }
fi
# sase_mm's CPU kernels (the fused SASE block's, sase_mm/models/sase/fast/csrc, and the
# squeeze statistics', sase_mm/models/layers/csrc): compiled on first use, about a minute
# each, then cached; build them now so the first run is not slow.
if ! (cd / && "$PY" -c "import sys; from sase_mm.models.sase.fast.kernels import fused_kernels; \
from sase_mm.models.layers.compiled import stats_kernels; \
sys.exit(0 if fused_kernels() is not None and stats_kernels() is not None else 1)"); then
    echo "[setup] warning: the CPU kernels did not build (see above); SASE falls back to PyTorch operators" >&2
fi
echo "[setup] environment ready ($("$PY" -c 'import torch, mmcv, mmdet, mmpretrain; print("torch", torch.__version__, "mmcv", mmcv.__version__, "mmdet", mmdet.__version__, "mmpretrain", mmpretrain.__version__)'))"
