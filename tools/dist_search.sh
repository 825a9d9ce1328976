#!/usr/bin/env bash
# Distributed SASE search (DARTS) with torchrun, one process per GPU
# (see dist_launch.sh for several machines):
#   bash tools/dist_search.sh CONFIG GPUS [tools/search.py options]
exec bash "$(dirname "$0")/dist_launch.sh" "$2" search.py "$1" \
    --launcher pytorch "${@:3}"
