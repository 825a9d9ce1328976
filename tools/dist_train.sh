#!/usr/bin/env bash
# Distributed training with torchrun, one process per GPU, or NPROC CPU
# processes (gloo) on a machine without CUDA:
#   bash tools/dist_train.sh CONFIG NPROC [tools/train.py options]
# Several machines: NNODES, NODE_RANK, MASTER_ADDR, PORT (dist_launch.sh).
. "$(dirname "$0")/dist_usage.sh" 2 "$@"
exec bash "$(dirname "$0")/dist_launch.sh" "$2" train.py "$1" \
    --launcher pytorch "${@:3}"
