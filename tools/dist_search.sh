#!/usr/bin/env bash
# Distributed SASE search (DARTS) with torchrun, one process per GPU, or
# NPROC CPU processes (gloo) on a machine without CUDA:
#   bash tools/dist_search.sh CONFIG NPROC [tools/search.py options]
# Several machines: NNODES, NODE_RANK, MASTER_ADDR, PORT (dist_launch.sh).
. "$(dirname "$0")/dist_usage.sh" 2 "$@"
exec bash "$(dirname "$0")/dist_launch.sh" "$2" search.py "$1" \
    --launcher pytorch "${@:3}"
