#!/usr/bin/env bash
# vdp set-up: installs what this machine lacks, then configures and builds (Release) into build/.
# Idempotent: a second run with nothing to do only re-checks and lets the build tool find nothing
# to rebuild. Sourced or run; prints each step and stops on the first failure with a fix.
#
# Environment (all optional):
#   VDP_CACHE        where the LibTorch virtual environment lives
#                    (default ${XDG_CACHE_HOME:-$HOME/.cache}/vdp)
#   VDP_BUILD_DIR    build folder (default <repo>/build)
#   VDP_BUILD_TYPE   CMake build type (default Release)
#   Torch_DIR / CMAKE_PREFIX_PATH   a LibTorch of your own; wins over the cached wheel
#   VDP_SKIP_APT=1   never call apt-get (you installed the Debian packages yourself)
#   VDP_CMAKE_ARGS   more CMake arguments for the first configure (e.g. -DVDP_BUILD_TESTS=OFF)
#   VDP_TARGETS      build only these targets (default: all)
#   VDP_CONFIGURE_ONLY=1   configure, do not build
#   VDP_TESTS=0      the programs only (container images): no test packages (GoogleTest, clang,
#                    ccache, python3-doc, matplotlib/tensorboard), configured with -DVDP_BUILD_TESTS=OFF
set -euo pipefail

VDP_TORCH_VERSION=2.11.0
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${VDP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vdp}
venv=$cache/venv-torch$VDP_TORCH_VERSION
build=${VDP_BUILD_DIR:-$repo/build}
build_type=${VDP_BUILD_TYPE:-Release}
with_tests=${VDP_TESTS:-1}

say() { echo "[vdp setup] $*"; }
die() { echo "[vdp setup] error: $*" >&2; exit 1; }

# --- 1. Debian packages ------------------------------------------------------------------
# One line per package: the package, and a file whose presence proves it is installed (cheap
# to check, so a warm run never calls dpkg or apt).
apt_needs=(
  "g++:/usr/bin/g++"
  "cmake:/usr/bin/cmake"
  "make:/usr/bin/make"
  "libopenmpi-dev:/usr/bin/mpicxx"
  "openmpi-bin:/usr/bin/mpirun"
  "libboost-program-options-dev:/usr/include/boost/program_options.hpp"
  "zlib1g-dev:/usr/include/zlib.h"
  "nlohmann-json3-dev:/usr/include/nlohmann/json.hpp"
  "dataset-fashion-mnist:/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
)
# What only the tests and development need.
[ "$with_tests" = 1 ] && apt_needs+=(
  "libgtest-dev:/usr/include/gtest/gtest.h"
  "ccache:/usr/bin/ccache"
  # The fuzz tests: clang and its libFuzzer runtime (Debian 12: libclang-rt-dev).
  "clang:/usr/bin/clang++"
  # The container test: builds the image on a Debian base it makes (docker/README.md).
  "podman:/usr/bin/podman"
  "debootstrap:/usr/sbin/debootstrap"
  # The cluster test (tests/cluster): Slurm and MUNGE from Debian, namespaces made with iproute2.
  "slurm-wlm:/usr/sbin/slurmctld"
  "slurm-wlm:/usr/sbin/slurmd"
  "munge:/usr/sbin/munged"
  "iproute2:/bin/ip"
  # Used by the tests' scripts (minimal Debian lacks them).
  "procps:/bin/ps"
  "bc:/usr/bin/bc"
)
# The GPT configs' corpus: the Python documentation's sources (python3-doc).
pydoc_sources() { compgen -G "/usr/share/doc/python3.*/html/_sources" >/dev/null; }
fuzz_runtime() { compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null; }
missing=()
for entry in "${apt_needs[@]}"; do
  pkg=${entry%%:*}; file=${entry#*:}
  [ -e "$file" ] || case " ${missing[*]-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
done
python=${VDP_PYTHON:-$(command -v python3 || true)}
if [ -z "$python" ]; then missing+=(python3 python3-venv); fi
if [ -n "$python" ] && ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then missing+=(python3-venv); fi
if [ "$with_tests" = 1 ]; then
  if ! pydoc_sources; then missing+=(python3-doc); fi
  if ! fuzz_runtime && apt-cache show libclang-rt-dev >/dev/null 2>&1; then missing+=(libclang-rt-dev); fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "${VDP_SKIP_APT:-0}" = 1 ]; then
    die "missing Debian packages: ${missing[*]} (VDP_SKIP_APT=1 forbids installing them; install them and rerun)"
  fi
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "missing Debian packages ${missing[*]} and not root; run as root or install them"
    sudo=sudo
  fi
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq || die "apt-get update failed; check the network and /etc/apt/sources.list"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || die "apt-get install ${missing[*]} failed; see the messages above"
  python=${VDP_PYTHON:-$(command -v python3)}
else
  say "Debian packages: all present"
fi

# --- 2. LibTorch from the pinned PyPI wheel, in a cached virtual environment ------------
torch_prefix=""
if [ -n "${Torch_DIR:-}" ]; then
  say "using your Torch_DIR=$Torch_DIR"
elif [ -n "${CMAKE_PREFIX_PATH:-}" ] && ls "${CMAKE_PREFIX_PATH%%:*}"/Torch/TorchConfig.cmake >/dev/null 2>&1; then
  say "using LibTorch from your CMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH"
else
  stamp=$venv/.vdp-ready
  if [ ! -f "$stamp" ]; then
    say "creating the LibTorch environment $venv (torch==$VDP_TORCH_VERSION from PyPI with its CUDA libraries: about 4.8 GB, once)"
    rm -rf "$venv"
    mkdir -p "$cache"
    "$python" -m venv "$venv" || die "python3 -m venv failed; install python3-venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    "$venv/bin/python" -m pip install --progress-bar off -q "torch==$VDP_TORCH_VERSION" numpy \
      || die "pip could not install torch==$VDP_TORCH_VERSION. vdp is pinned to it and will not switch versions silently (Debian's libtorch-dev is no substitute). Fix the network/PyPI access or set Torch_DIR to a LibTorch $VDP_TORCH_VERSION and rerun"
    "$venv/bin/python" -c "import torch; assert torch.__version__.startswith('$VDP_TORCH_VERSION'), torch.__version__" \
      || die "the environment holds the wrong torch version; delete $venv and rerun"
    touch "$stamp"
  fi
  # Python packages the tests and tools use beside torch (checked apart, so an environment made
  # by an older set-up gains them too).
  if [ "$with_tests" = 1 ] && ! "$venv/bin/python" -c 'import safetensors, matplotlib, tensorboard' 2>/dev/null; then
    say "installing safetensors, matplotlib and tensorboard into $venv"
    "$venv/bin/python" -m pip install --progress-bar off -q safetensors matplotlib tensorboard \
      || die "pip could not install safetensors/matplotlib/tensorboard into $venv; check PyPI access"
  fi
  torch_prefix=$("$venv/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
  say "LibTorch: $torch_prefix"
fi

# --- 3. configure and build -------------------------------------------------------------
jobs=${VDP_JOBS:-$(nproc)}
cmake_args=(-S "$repo" -B "$build" -DCMAKE_BUILD_TYPE="$build_type")
[ -n "$torch_prefix" ] && cmake_args+=(-DVDP_TORCH_PREFIX="$torch_prefix" -DVDP_PYTHON="$venv/bin/python")
[ -x /usr/bin/ninja ] && [ ! -f "$build/Makefile" ] && cmake_args+=(-G Ninja)
# The CUDA toolkit: CMake finds it on PATH or where it is installed (/usr/local/cuda, CUDA_PATH);
# CUDA_HOME, the other usual variable, is passed on. Without a toolkit the CPU build is complete
# (src/cmake/vdpTorch.cmake).
if [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then cmake_args+=(-DCUDAToolkit_ROOT="$CUDA_HOME"); fi
# Extra CMake arguments, e.g. VDP_CMAKE_ARGS="-DVDP_BUILD_TESTS=OFF -DVDP_WITH_CUDA=OFF".
[ "$with_tests" = 1 ] || cmake_args+=(-DVDP_BUILD_TESTS=OFF)
if [ -n "${VDP_CMAKE_ARGS:-}" ]; then read -r -a extra <<<"$VDP_CMAKE_ARGS"; cmake_args+=("${extra[@]}"); fi
# A configure that failed half-way leaves a CMakeCache.txt but no build files: configure again.
if [ ! -f "$build/CMakeCache.txt" ] || { [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; } ||
   [ "${VDP_RECONFIGURE:-0}" = 1 ]; then
  say "configuring $build ($build_type)"
  cmake "${cmake_args[@]}" || die "CMake configure failed; see the messages above (delete $build and rerun after fixing)"
fi
if [ "${VDP_CONFIGURE_ONLY:-0}" = 1 ]; then say "configured $build (VDP_CONFIGURE_ONLY=1: not built)"; exit 0; fi
say "building with $jobs jobs"
targets=()
for t in ${VDP_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$jobs" "${targets[@]}" || die "the build failed; see the compiler messages above"
say "ready: $build/vdp-train"
