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
#   VDP_FOR=train    what training needs only (launch/train.sh): no test packages, only the target
#                    vdp-train built; a later run without it (launch/test.sh) adds the rest
#   VDP_TORCH_VARIANT=cpu|cuda   the LibTorch environment: cpu = the pinned wheel with only the two
#                    NVIDIA libraries its CPU library loads (about 1.3 GB instead of 4.8 GB); chosen by
#                    default for training where no CUDA toolkit and no NVIDIA driver are found
#   VDP_PYDOC=1      also install python3-doc (the corpus of configs/gpt_*.ini; launch/train.sh asks)
# Each phase prints its duration; everything the tools print goes to a log kept per run in
# $VDP_CACHE/logs/ (its path is printed; the last lines are shown when a phase fails).
set -euo pipefail

VDP_TORCH_VERSION=2.11.0
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${VDP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vdp}
venv=$cache/venv-torch$VDP_TORCH_VERSION
build=${VDP_BUILD_DIR:-$repo/build}
build_type=${VDP_BUILD_TYPE:-Release}
with_tests=${VDP_TESTS:-1}
for_train=0
[ "${VDP_FOR:-}" = train ] && for_train=1
# Test packages and Python test tools only for the test command (or a plain set-up).
want_tests=$with_tests
[ "$for_train" = 1 ] && want_tests=0

say() { echo "[vdp setup] $*"; }
mkdir -p "$cache/logs"
log=$cache/logs/setup-$(date +%Y%m%d-%H%M%S)-$$.log
: >"$log"
# Keep the last 20 logs.
ls -1t "$cache"/logs/setup-*.log 2>/dev/null | tail -n +21 | xargs -r rm -f
die() {
  echo "[vdp setup] error: $*" >&2
  if [ -s "$log" ]; then echo "[vdp setup] the last lines of $log:" >&2; tail -n 25 "$log" >&2; fi
  exit 1
}
now() { date +%s; }
took() {  # took START: "3 s", "2 min 05 s"
  local t=$(( $(now) - $1 ))
  if [ "$t" -ge 60 ]; then printf '%d min %02d s' $((t / 60)) $((t % 60)); else printf '%d s' "$t"; fi
}
t_setup=$(now)

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
[ "$want_tests" = 1 ] && apt_needs+=(
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
if [ "$want_tests" = 1 ] || [ "${VDP_PYDOC:-0}" = 1 ]; then
  if ! pydoc_sources; then missing+=(python3-doc); fi
fi
if [ "$want_tests" = 1 ]; then
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
  t=$(now)
  say "installing ${#missing[@]} Debian packages and what they need (a few minutes on a fresh machine; log: $log): ${missing[*]}"
  $sudo apt-get update -q >>"$log" 2>&1 || die "apt-get update failed; check the network and /etc/apt/sources.list"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1 \
    || die "apt-get install ${missing[*]} failed"
  say "Debian packages installed in $(took "$t")"
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
  # The variant: "cpu" (the wheel without its CUDA dependencies, but for the two libraries its CPU
  # library is linked against) where nothing could use CUDA and only training is asked for; "full"
  # otherwise. Python's `import torch` (the PyTorch reference tests) needs the full one.
  has_toolkit=0 has_driver=0
  # An executable nvcc on PATH, in /usr/local/cuda*, or in CUDA_HOME (bash's own lookup would also
  # report a file that cannot be run).
  exe_in() { local x=$1 d; shift; for d in "$@"; do [ -f "$d/$x" ] && [ -x "$d/$x" ] && return 0; done; return 1; }
  IFS=: read -r -a path_dirs <<<"${PATH:-}"
  if exe_in nvcc "${path_dirs[@]}" /usr/local/cuda*/bin ${CUDA_HOME:+"$CUDA_HOME/bin"}; then has_toolkit=1; fi
  if [ -e /proc/driver/nvidia/version ] || exe_in nvidia-smi "${path_dirs[@]}" ||
     ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then has_driver=1; fi
  case "${VDP_TORCH_VARIANT:-}" in
    cpu) variant=cpu ;;
    cuda|full) variant=full ;;
    "") if [ "$has_toolkit$has_driver" = 00 ] && [ "$want_tests" = 0 ]; then variant=cpu; else variant=full; fi ;;
    *) die "VDP_TORCH_VARIANT must be cpu or cuda, not '$VDP_TORCH_VARIANT'" ;;
  esac
  stamp=$venv/.vdp-ready
  # An environment made by an older set-up has an empty stamp: the full one.
  have=""
  [ -f "$stamp" ] && have=$(cat "$stamp") && have=${have:-full}
  # The CPU library's own CUDA dependencies (NEEDED by libtorch_cpu.so): cudart and cupti, pinned
  # by the wheel's cuda-toolkit==13.0.2 requirement.
  cpu_extras="cuda-toolkit[cudart,cupti]==13.0.2"
  if [ -z "$have" ]; then
    t=$(now)
    if [ "$variant" = cpu ]; then
      say "creating the LibTorch environment $venv: torch==$VDP_TORCH_VERSION without the CUDA libraries this machine cannot use (no CUDA toolkit, no NVIDIA driver): about 1.3 GB, once; log: $log"
    else
      say "creating the LibTorch environment $venv: torch==$VDP_TORCH_VERSION with its CUDA libraries: about 4.8 GB, once; log: $log"
    fi
    rm -rf "$venv"
    mkdir -p "$cache"
    "$python" -m venv "$venv" >>"$log" 2>&1 || die "python3 -m venv failed; install python3-venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >>"$log" 2>&1 || true
    pin_fail="pip could not install torch==$VDP_TORCH_VERSION. vdp is pinned to it and will not switch versions silently (Debian's libtorch-dev is no substitute). Fix the network/PyPI access or set Torch_DIR to a LibTorch $VDP_TORCH_VERSION and rerun"
    if [ "$variant" = cpu ]; then
      "$venv/bin/python" -m pip install --progress-bar off --no-deps "torch==$VDP_TORCH_VERSION" >>"$log" 2>&1 || die "$pin_fail"
      "$venv/bin/python" -m pip install --progress-bar off "$cpu_extras" numpy >>"$log" 2>&1 || die "$pin_fail"
    else
      "$venv/bin/python" -m pip install --progress-bar off "torch==$VDP_TORCH_VERSION" numpy >>"$log" 2>&1 || die "$pin_fail"
    fi
    "$venv/bin/python" -c "import importlib.metadata as m; v = m.version('torch'); assert v.startswith('$VDP_TORCH_VERSION'), v" \
      || die "the environment holds the wrong torch version; delete $venv and rerun"
    echo "$variant" >"$stamp"
    say "LibTorch environment ($variant, $(du -sh "$venv" | cut -f1)) made in $(took "$t")"
  elif [ "$have" = cpu ] && [ "$variant" = full ]; then
    t=$(now)
    why="Python's import torch (the PyTorch reference tests) needs them"
    [ "$has_toolkit$has_driver" != 00 ] && why="this machine now has a CUDA toolkit or an NVIDIA driver"
    say "adding torch's CUDA libraries to $venv ($why): about 3.5 GB more, once; log: $log"
    "$venv/bin/python" -m pip install --progress-bar off "torch==$VDP_TORCH_VERSION" >>"$log" 2>&1 \
      || die "pip could not install torch==$VDP_TORCH_VERSION's CUDA libraries; check PyPI access"
    echo full >"$stamp"
    say "LibTorch environment (full, $(du -sh "$venv" | cut -f1)) in $(took "$t")"
  fi
  # Python packages the tests and tools use beside torch (checked apart, so an environment made
  # by an older set-up gains them too).
  if [ "$want_tests" = 1 ] && ! "$venv/bin/python" -c 'import safetensors, matplotlib, tensorboard' 2>/dev/null; then
    t=$(now)
    say "installing safetensors, matplotlib and tensorboard into $venv (log: $log)"
    "$venv/bin/python" -m pip install --progress-bar off safetensors matplotlib tensorboard >>"$log" 2>&1 \
      || die "pip could not install safetensors/matplotlib/tensorboard into $venv; check PyPI access"
    say "Python test tools installed in $(took "$t")"
  fi
  # Where the wheel keeps its CMake files, found without importing torch (the CPU variant's Python
  # cannot import it).
  torch_prefix=$("$venv/bin/python" -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("torch").origin), "share", "cmake"))')
  [ -d "$torch_prefix" ] || die "no LibTorch CMake files in $torch_prefix; delete $venv and rerun"
  say "LibTorch: $torch_prefix"
fi

# --- 3. configure and build -------------------------------------------------------------
jobs=${VDP_JOBS:-$(nproc)}
cmake_args=(-S "$repo" -B "$build" -DCMAKE_BUILD_TYPE="$build_type")
# The PyTorch reference tests need Python's `import torch`: registered only with the full environment.
py_for_tests=""
[ -n "$torch_prefix" ] && [ "$(cat "$venv/.vdp-ready" 2>/dev/null || true)" != cpu ] && py_for_tests=$venv/bin/python
[ -n "$torch_prefix" ] && cmake_args+=(-DVDP_TORCH_PREFIX="$torch_prefix" -DVDP_PYTHON="$py_for_tests")
[ -x /usr/bin/ninja ] && [ ! -f "$build/Makefile" ] && cmake_args+=(-G Ninja)
# The CUDA toolkit: CMake finds it on PATH or where it is installed (/usr/local/cuda, CUDA_PATH);
# CUDA_HOME, the other usual variable, is passed on. Without a toolkit the CPU build is complete
# (src/cmake/vdpTorch.cmake).
if [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then cmake_args+=(-DCUDAToolkit_ROOT="$CUDA_HOME"); fi
# The tests: off with VDP_TESTS=0; for training alone, configured where GoogleTest is (only
# vdp-train is built), so that the test command only adds targets.
tests_on=ON
if [ "$with_tests" != 1 ]; then tests_on=OFF
elif [ "$for_train" = 1 ] && [ ! -e /usr/include/gtest/gtest.h ]; then tests_on=OFF; fi
cmake_args+=(-DVDP_BUILD_TESTS=$tests_on)
# Extra CMake arguments, e.g. VDP_CMAKE_ARGS="-DVDP_BUILD_TESTS=OFF -DVDP_WITH_CUDA=OFF".
if [ -n "${VDP_CMAKE_ARGS:-}" ]; then read -r -a extra <<<"$VDP_CMAKE_ARGS"; cmake_args+=("${extra[@]}"); fi
cache_has() { grep -qx "$1" "$build/CMakeCache.txt" 2>/dev/null; }
# Configure when there is no build yet, when a configure failed half-way (a CMakeCache.txt but no
# build files), when asked, or when the tests (or the Python that runs their references) must be
# added to a build made for training alone.
reason=""
if [ ! -f "$build/CMakeCache.txt" ] || { [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; }; then reason="a new build"
elif [ "${VDP_RECONFIGURE:-0}" = 1 ]; then reason="VDP_RECONFIGURE=1"
elif [ "$tests_on" = ON ] && [ "$for_train" = 0 ] && ! cache_has "VDP_BUILD_TESTS:BOOL=ON"; then reason="adding the tests"
elif [ -n "$torch_prefix" ] && [ "$for_train" = 0 ] && ! cache_has "VDP_PYTHON:STRING=$py_for_tests" &&
     ! cache_has "VDP_PYTHON:FILEPATH=$py_for_tests" && ! cache_has "VDP_PYTHON:UNINITIALIZED=$py_for_tests"; then
  reason="the PyTorch reference tests' Python"
fi
if [ -n "$reason" ]; then
  t=$(now)
  say "configuring $build ($build_type; $reason; log: $log)"
  cmake "${cmake_args[@]}" >>"$log" 2>&1 || die "CMake configure failed (delete $build and rerun after fixing)"
  grep -E '^-- vdp:' "$log" | tail -n 8 | sed 's/^-- /[vdp setup]   /'
  say "configured in $(took "$t")"
fi
if [ "${VDP_CONFIGURE_ONLY:-0}" = 1 ]; then say "configured $build (VDP_CONFIGURE_ONLY=1: not built)"; exit 0; fi
targets=()
wanted=${VDP_TARGETS:-}
[ -z "$wanted" ] && [ "$for_train" = 1 ] && wanted=vdp-train
for t in $wanted; do targets+=(--target "$t"); done
t=$(now)
blog=$build/build-$(date +%Y%m%d-%H%M%S).log
mkdir -p "$build"
say "building ${wanted:-everything} with $jobs jobs (log: $blog)"
# The build tool's output goes to its log; its progress ("[done/total]" from Ninja, "[ NN%]" from
# make) is shown: redrawn on a terminal, a line a minute otherwise.
cmake --build "$build" -j "$jobs" "${targets[@]}" >"$blog" 2>&1 &
bpid=$!
trap 'kill $bpid 2>/dev/null' EXIT
last="" shown=0
progress() { { grep -oE '^\[ *[0-9]+(/[0-9]+|%)\]' "$blog" 2>/dev/null || true; } | tail -n 1 | tr -d '[] '; }
while kill -0 "$bpid" 2>/dev/null; do
  sleep 2
  p=$(progress)
  [ -n "$p" ] || continue
  case "$p" in */*) what="$p targets" ;; *) what="$p" ;; esac
  if [ -t 1 ]; then
    printf '\r[vdp setup] building: %s (%s)\033[K' "$what" "$(took "$t")"; shown=1
  elif [ "$p" != "$last" ] && [ $(( $(now) - t )) -ge $(( (shown + 1) * 60 )) ]; then
    say "building: $what ($(took "$t"))"; shown=$((shown + 1)); last=$p
  fi
done
rc=0; wait "$bpid" || rc=$?
trap - EXIT
[ -t 1 ] && [ "$shown" -gt 0 ] && printf '\r\033[K'
cat "$blog" >>"$log"
if [ "$rc" != 0 ]; then
  echo "[vdp setup] error: the build failed after $(took "$t"); the compiler's messages (all of it in $blog):" >&2
  grep -E -A 12 'error|FAILED' "$blog" | head -n 60 >&2
  exit 1
fi
# Keep the last 5 build logs.
ls -1t "$build"/build-*.log 2>/dev/null | tail -n +6 | xargs -r rm -f
steps=$(progress | sed 's|/.*||')
say "built in $(took "$t") (${steps:-no} build steps run)"
say "ready: $build/vdp-train (set-up took $(took "$t_setup"); log: $log)"
