#!/usr/bin/env bash
# Multi-GPU training with torchrun (see dist_launch.sh for multi-node):
#   bash tools/dist_train.sh CONFIG GPUS [train.py options]
exec bash "$(dirname "$0")/dist_launch.sh" "$2" train.py "$1" \
    --launcher pytorch "${@:3}"
