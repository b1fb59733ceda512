#!/usr/bin/env bash
# vdp vs PyTorch DDP (gloo, no_sync) at W=2 on this machine's CPU, Fashion-MNIST CNN, one run:
# prints samples/s of each and the ratio at micro-batch 4 and 64 (global batch 128).
#   launch/bench_ddp.sh [--steps N] [--global-batch B] [--micro-batches 4 64]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/launch/setup.sh" >&2
build=${VDP_BUILD_DIR:-$repo/build}
python=$(sed -n 's/^VDP_PYTHON:FILEPATH=//p' "$build/CMakeCache.txt")
[ -x "$python" ] || { echo "launch/bench_ddp.sh: no Python with torch configured (VDP_PYTHON)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$python" "$repo/tests/reference/ddp_reference.py" --vdp-train "$build/vdp-train" --bench \
  --global-batch 128 --steps 40 "$@" 2>&1 | grep -v -e '^vdp-train:' -e '^done:' -e '^plan:' -e '^  '
