#!/usr/bin/env bash
# World size 1 on one GPU, through the NCCL backend (the same code path as many GPUs).
#   launch/single-gpu.sh [config.ini] [vdp-train options...]     (GPU 0 unless CUDA_VISIBLE_DEVICES says)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
config=$repo/configs/fashion_mnist.ini
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then config=$1; shift; fi
"$repo/launch/setup.sh" >&2
exec "${VDP_BUILD_DIR:-$repo/build}/vdp-train" --config "$config" --device cuda --backend nccl "$@"
