#!/usr/bin/env bash
# The set-up on machines laid out unlike this one, each in a private mount namespace (root and
# unshare -m), so the host is never changed:
#   1. a CUDA toolkit installed but not on PATH (Debian's default and the CUDA installer's):
#      launch/setup.sh configures a fresh build folder and finds the toolkit (VDP_WITH_CUDA=ON);
#   2. no CUDA toolkit at all: launch/test.sh builds the CPU vdp-train and the unit tests and passes
#      them, and launch/train.sh trains at W=2.
# Usage: toolkit_test.sh SRC_DIR. Exit 77 (skipped) where namespaces are not available.
set -u
src=$1
if [ "$(id -u)" != 0 ] || ! unshare -m --propagation private true 2>/dev/null; then
  echo "SKIP: needs root and unshare -m to hide the CUDA toolkit"; exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
check() {  # check NAME COMMAND...: runs the command, reports pass/fail
  local name=$1; shift
  if "$@"; then echo "PASS $name"; else echo "FAIL $name"; failures=$((failures + 1)); fi
}

# The hiding script run inside the namespace: every nvcc on PATH becomes an empty, non-executable
# file; PATH loses the toolkit's bin/; with "absent", every toolkit folder becomes an empty tmpfs
# (symbolic links into it, like /usr/local/cuda or /usr/local/lib/libcudart.so, then dangle).
cat >"$work/hide.sh" <<'HIDE'
set -eu
mode=$1; shift
IFS=: read -r -a dirs <<<"$PATH"
newpath=""
for d in "${dirs[@]}"; do
  case "$d" in *cuda*) continue ;; esac
  [ -e "$d/nvcc" ] && mount --bind /dev/null "$d/nvcc"
  newpath=${newpath:+$newpath:}$d
done
export PATH=$newpath
visible() {  # an executable nvcc on PATH (bash's own lookup also reports non-executable files)
  local d; IFS=: read -r -a ds <<<"$PATH"
  for d in "${ds[@]}"; do [ -f "$d/nvcc" ] && [ -x "$d/nvcc" ] && return 0; done
  return 1
}
unset CUDA_HOME CUDA_PATH CUDACXX CUDAToolkit_ROOT
if [ "$mode" = absent ]; then
  for d in /usr/local/cuda-* /opt/cuda /usr/lib/cuda; do
    [ -d "$d" ] && [ ! -L "$d" ] && mount -t tmpfs none "$d"
  done
  if visible || [ -e /usr/local/cuda/bin/nvcc ]; then echo "hide.sh: nvcc still visible" >&2; exit 1; fi
else
  if visible; then echo "hide.sh: nvcc still on PATH" >&2; exit 1; fi
fi
exec "$@"
HIDE

# 1. Toolkit present, not on PATH: only where this machine has one.
toolkit=""
for d in /usr/local/cuda /usr/local/cuda-*; do [ -x "$d/bin/nvcc" ] && toolkit=$d && break; done
if [ -n "$toolkit" ]; then
  unshare -m --propagation private bash "$work/hide.sh" present \
    env VDP_SKIP_APT=1 VDP_BUILD_DIR="$work/path" VDP_CMAKE_ARGS="-DVDP_BUILD_TESTS=OFF" VDP_CONFIGURE_ONLY=1 \
    bash "$src/launch/setup.sh" >"$work/path.log" 2>&1
  check "toolkit not on PATH: configure finds $toolkit" grep -q 'VDP_WITH_CUDA=ON' "$work/path.log"
  grep -q 'VDP_WITH_CUDA=ON' "$work/path.log" || tail -30 "$work/path.log"
else
  echo "SKIP toolkit not on PATH (this machine has no CUDA toolkit)"
fi

# 2. No toolkit: the README's two commands, as a user without a toolkit runs them: launch/test.sh
#    (here limited to the CPU program and the unit tests: VDP_TARGETS, ctest -L unit) builds the CPU
#    vdp-train and the unit tests and passes them; launch/train.sh then trains.
unshare -m --propagation private bash "$work/hide.sh" absent \
  env VDP_SKIP_APT=1 VDP_BUILD_DIR="$work/cpu" VDP_TARGETS="vdp-train vdp_unit_tests" \
  bash "$src/launch/test.sh" -L unit >"$work/cpu.log" 2>&1
rc=$?
check "no toolkit: launch/test.sh builds vdp-train and passes the unit tests" test "$rc" = 0 -a -x "$work/cpu/vdp-train"
[ "$rc" = 0 ] || tail -30 "$work/cpu.log"
grep -E 'tests passed|tests failed' "$work/cpu.log"
check "no toolkit: the CPU build (VDP_WITH_CUDA=OFF, LibTorch's CPU libraries imported)" \
  grep -q 'CPU libraries imported' "$work/cpu.log"
if [ -x "$work/cpu/vdp-train" ]; then
  (cd "$work" && unshare -m --propagation private bash "$work/hide.sh" absent \
    env VDP_SKIP_APT=1 VDP_BUILD_DIR="$work/cpu" VDP_TARGETS=vdp-train \
    bash "$src/launch/train.sh" --np 2 --dataset regression --model mlp --samples 256 --global-batch 64 \
    --micro-batch 16 --epochs 2 --quiet >"$work/run.log" 2>&1)
  check "no toolkit: launch/train.sh trains at W=2" grep -q '^done: 8 steps' "$work/run.log"
  cat "$work/run.log"
fi
echo "toolkit: $failures failed"
[ "$failures" = 0 ]
