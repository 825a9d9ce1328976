#!/usr/bin/env bash
# Multi-GPU testing with torchrun (see dist_launch.sh for multi-node):
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]
exec bash "$(dirname "$0")/dist_launch.sh" "$3" test.py "$1" "$2" \
    --launcher pytorch "${@:4}"
