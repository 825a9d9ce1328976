#!/usr/bin/env bash
# One torchrun launch for tools/dist_{train,test,search}.sh:
#   bash tools/dist_launch.sh GPUS TOOL.py [TOOL arguments]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT as in mmdetection.
set -e
GPUS=$1
TOOL=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python3}

PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH} \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/$TOOL" "$@"
