#!/usr/bin/env bash
# Distributed testing with torchrun, one process per GPU, or NPROC CPU
# processes (gloo) on a machine without CUDA:
#   bash tools/dist_test.sh CONFIG CHECKPOINT NPROC [tools/test.py options]
# Several machines: NNODES, NODE_RANK, MASTER_ADDR, PORT (dist_launch.sh).
. "$(dirname "$0")/dist_usage.sh" 3 "$@"
exec bash "$(dirname "$0")/dist_launch.sh" "$3" test.py "$1" "$2" \
    --launcher pytorch "${@:4}"
