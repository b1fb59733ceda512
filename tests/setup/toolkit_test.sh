#!/usr/bin/env bash
# The set-up on machines laid out unlike this one, each in a private mount namespace (root and
# unshare -m), so the host is never changed:
#   1. a CUDA toolkit installed but not on PATH (Debian's default and the CUDA installer's):
#      launch/setup.sh configures a fresh build folder and finds the toolkit (VDP_WITH_CUDA=ON);
#   2. no CUDA toolkit and no driver, a fresh LibTorch cache: launch/train.sh installs the CPU-only
#      environment (no unused NVIDIA package, at most 1.5 GB), builds vdp-train alone and trains at
#      W=2; launch/test.sh then adds the rest and passes the unit tests.
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

# 2. No toolkit and no NVIDIA driver, a fresh LibTorch cache: the README's two commands in a new
#    user's order. launch/train.sh first: it must install the CPU-only environment (the pinned wheel,
#    of NVIDIA's packages only the two libraries libtorch_cpu.so loads), at most 1.5 GB, build
#    vdp-train alone and train at W=2. Then launch/test.sh (here limited to the unit tests:
#    VDP_TARGETS, ctest -L unit) on the same build and cache: it adds torch's CUDA libraries for
#    Python's import torch, builds what is missing without rebuilding vdp-train, and passes.
cache=$work/cache
(cd "$work" && unshare -m --propagation private bash "$work/hide.sh" absent \
  env VDP_SKIP_APT=1 VDP_CACHE="$cache" VDP_BUILD_DIR="$work/cpu" \
  bash "$src/launch/train.sh" --np 2 --dataset regression --model mlp --samples 256 --global-batch 64 \
  --micro-batch 16 --epochs 2 --quiet >"$work/train.log" 2>&1)
rc=$?
grep '^\[vdp setup\]' "$work/train.log"
check "no toolkit, no driver: launch/train.sh trains at W=2 (exit $rc)" grep -q '^done: 8 steps' "$work/train.log"
[ "$rc" = 0 ] || tail -30 "$work/train.log"
venv=$(ls -d "$cache"/venv-torch* 2>/dev/null | head -n 1)
size=$(du -sb "$venv" 2>/dev/null | cut -f1)
echo "the CPU-only LibTorch environment: $((${size:-0} / 1000000)) MB"
check "the environment is the CPU-only one, at most 1.5 GB ($((${size:-0} / 1000000)) MB)" \
  test "$(cat "$venv/.vdp-ready" 2>/dev/null)" = cpu -a "${size:-0}" -le 1500000000
nv=$(ls "$venv"/lib/python3*/site-packages | grep -iE '^(nvidia|triton|cuda)' | grep -v '\.dist-info$' | tr '\n' ' ')
pkgs=$(ls "$venv"/lib/python3*/site-packages | sed -n 's/^\(nvidia_[a-z_]*\|triton\)-.*\.dist-info$/\1/p' | sort | tr '\n' ' ')
echo "NVIDIA and Triton packages installed: $pkgs"
check "of NVIDIA's packages only cudart and cupti, no Triton" test "$pkgs" = "nvidia_cuda_cupti nvidia_cuda_runtime "
check "only vdp-train was built (no test or benchmark program)" \
  test -x "$work/cpu/vdp-train" -a ! -e "$work/cpu/vdp-bench" -a ! -e "$work/cpu/tests/vdp_unit_tests"
check "vdp-train finds every library it needs" bash -c "! ldd '$work/cpu/vdp-train' | grep -q 'not found'"
check "no toolkit: the CPU build (VDP_WITH_CUDA=OFF, LibTorch's CPU libraries imported)" \
  grep -q 'CPU libraries imported' "$cache"/logs/setup-*.log
before=$(stat -c %Y "$work/cpu/vdp-train" 2>/dev/null)
(cd "$work" && unshare -m --propagation private bash "$work/hide.sh" absent \
  env VDP_SKIP_APT=1 VDP_CACHE="$cache" VDP_BUILD_DIR="$work/cpu" VDP_TARGETS="vdp-train vdp_unit_tests" \
  bash "$src/launch/test.sh" -L unit >"$work/cpu.log" 2>&1)
rc=$?
grep '^\[vdp setup\]' "$work/cpu.log"
check "no toolkit: launch/test.sh adds the unit tests and passes them" test "$rc" = 0 -a -x "$work/cpu/tests/vdp_unit_tests"
[ "$rc" = 0 ] || tail -30 "$work/cpu.log"
grep -E 'tests passed|tests failed' "$work/cpu.log"
check "the test command did not rebuild vdp-train" test "$(stat -c %Y "$work/cpu/vdp-train" 2>/dev/null)" = "$before"
check "the test command made Python's import torch work" "$venv/bin/python" -c 'import torch'
echo "toolkit: $failures failed"
[ "$failures" = 0 ]
