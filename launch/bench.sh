#!/usr/bin/env bash
# All benchmarks in one run (vdp-bench): vdp vs PyTorch DDP, vs a plain LibTorch loop, peak memory
# against K and against the summed-loss recipe, all-reduce bandwidth, overlap on/off.
#   launch/bench.sh [--json] [--sections ddp,overhead,memory,dist] [--steps N]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/launch/setup.sh" >&2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec "${VDP_BUILD_DIR:-$repo/build}/vdp-bench" "$@"
