#!/usr/bin/env bash
# Fills device_wheels/ (git-ignored) with the wheels that the GPU check
# (tools/device/gpu_check.sh, docs/gpu.md) installs on a GPU machine that
# has no network: those of tools/device/wheels.txt, for Python 3.12 on
# manylinux x86_64, binary only (nothing is compiled there), without
# dependencies (the list names each one the machine lacks). The folder
# travels with the working tree, which may hold 64 MiB in all, so the
# folder must stay under DEVICE_WHEELS_MAX_MIB (default 48).
#
#   make device-wheels          (or: bash tools/device/fetch_wheels.sh [DIR])
set -euo pipefail
PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-$ROOT/device_wheels}
MAX_MIB=${DEVICE_WHEELS_MAX_MIB:-48}
LIST=$ROOT/tools/device/wheels.txt

mkdir -p "$(dirname "$DEST")"
DEST=$(cd "$(dirname "$DEST")" && pwd)/$(basename "$DEST")
tmp=$(mktemp -d "$DEST.tmp.XXXXXX")  # beside DEST: the final mv is a rename
trap 'rm -rf "$tmp"' EXIT

echo "[device-wheels] fetching $(grep -c '^[a-z]' "$LIST") wheels" \
    "(CPython 3.12, manylinux x86_64) into $DEST"
"$PY" -m pip download --disable-pip-version-check --no-input --quiet \
    --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$tmp" -r "$LIST"

# One version of each project (two would stop pip there), no torch, and the
# size limit.
"$PY" - "$tmp" "$MAX_MIB" <<'PYEOF'
import collections, os, sys
folder, max_mib = sys.argv[1], float(sys.argv[2])
wheels = sorted(f for f in os.listdir(folder) if f.endswith('.whl'))
other = sorted(set(os.listdir(folder)) - set(wheels))
if other:
    sys.exit(f'[device-wheels] not wheels (the machine must not compile): '
             f'{other}')
names = collections.Counter(w.split('-')[0].lower() for w in wheels)
twice = [n for n, c in names.items() if c > 1]
if twice:
    sys.exit(f'[device-wheels] several versions of {twice}')
heavy = {'torch', 'torchvision', 'nvidia', 'triton'} & {
    n.split('_')[0] for n in names}
if heavy:
    sys.exit(f'[device-wheels] {sorted(heavy)} must come from the machine, '
             f'not from the folder')
size = sum(os.path.getsize(os.path.join(folder, w)) for w in wheels)
if size > max_mib * 2**20:
    sys.exit(f'[device-wheels] {size / 2**20:.1f} MiB is over the limit of '
             f'{max_mib:g} MiB')
for w in wheels:
    print(f'  {os.path.getsize(os.path.join(folder, w)) / 2**20:6.2f} MiB  '
          f'{w}')
print(f'[device-wheels] {len(wheels)} wheels, {size / 2**20:.2f} MiB')
PYEOF

old=
if [ -e "$DEST" ]; then
    old=$(mktemp -d "$DEST.old.XXXXXX")
    mv "$DEST" "$old/"
fi
mv "$tmp" "$DEST"
[ -n "$old" ] && rm -rf "$old"
trap - EXIT
echo "[device-wheels] ready: $DEST (carry it to the GPU machine: docs/gpu.md)"
