#!/usr/bin/env bash
# The prepared GPU check of sase_mm (SASE, arXiv 2411.08333; docs/gpu.md):
# on a bare GPU machine with no network, installs what it lacks from the
# wheels folder (make device-wheels), then runs the CUDA tests, the training
# step benchmarks, a digits search and torch.compile, within --budget
# seconds (default 280), and writes OUT_DIR/gpu_check.json and
# OUT_DIR/gpu_check.log. Without CUDA it rehearses (every section says why it
# skipped) and still writes both.
#
#   bash tools/device/gpu_check.sh OUT_DIR [--budget 280] [--only NAMES]
#       [--smoke]    (see: python3 tools/device/gpu_check.py --help)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: bash tools/device/gpu_check.sh OUT_DIR [options]" >&2
    exit 2
fi
OUT=$1
shift
PY=${PYTHON:-python3}
mkdir -p "$OUT" || exit 2
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
exec "$PY" "$ROOT/tools/device/gpu_check.py" --out "$OUT" "$@"
