#!/usr/bin/env bash
# Stages vdp's runtime tree for the image's runtime stage (docker/Dockerfile's build stage runs it):
#   docker/stage.sh BUILD_DIR PREFIX STAGE
# installs vdp into PREFIX, adds the configs and launchers, copies under STAGE every library of
# LibTorch's virtual environment that the programs load (at the same absolute paths, so the
# programs' RUNPATHs hold; in a CUDA build the whole nvidia/ tree too, whose libraries cuDNN and
# cuBLAS open at run time), and writes PREFIX/share/vdp/runtime-packages: the Debian/Ubuntu packages that
# own the system libraries the programs link, plus mpirun's and the data set's. The runtime stage
# installs that list, so one recipe serves Debian and Ubuntu (CUDA) bases with their own names.
set -euo pipefail
build=$1 prefix=$2 stage=$3
cache=${VDP_CACHE:-$prefix/cache}   # where setup.sh made LibTorch's environment
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "stage.sh: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >/dev/null
cp -r "$repo/configs" "$repo/launch" "$prefix/"
ln -sf ../launch/vdp-run "$prefix/bin/vdp-run"
mkdir -p "$prefix/share/vdp"

libs=$(for exe in "$prefix"/bin/vdp-train "$prefix"/bin/vdp-bench; do
         ldd "$exe" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
         if ldd "$exe" | grep -q 'not found'; then die "$exe: $(ldd "$exe" | grep 'not found' | head -1)"; fi
       done | sort -u)
owner() {  # the package that owns a library file (usr-merged systems list either path)
  local f=$1 real
  real=$(readlink -f "$f")
  for p in "$f" "$real" "${f#/usr}" "/usr${f}" "${real#/usr}" "/usr${real}"; do
    dpkg -S "$p" 2>/dev/null | head -1 | cut -d: -f1 && return 0
  done
  return 1
}
packages=(openmpi-bin dataset-fashion-mnist)
cuda=0
for lib in $libs; do
  case $lib in
    "$cache"/*)  # LibTorch's environment: copy the file and its chain of links
      f=$(realpath -s "$lib")
      [[ $f == */libtorch_cuda.so ]] && cuda=1
      while :; do
        mkdir -p "$stage$(dirname "$f")"
        cp -P "$f" "$stage$f"
        [ -L "$f" ] || break
        t=$(readlink "$f"); [[ $t == /* ]] || t=$(dirname "$f")/$t
        f=$t
      done ;;
    /usr/local/cuda*)  # the toolkit's runtime: the CUDA runtime base image has it
      pkg=$(owner "$lib") && packages+=("$pkg") || echo "stage.sh: $lib is left to the CUDA runtime base image" ;;
    *)
      pkg=$(owner "$lib") || die "no package owns $lib; install it from a package, or copy it into the image"
      packages+=("$pkg") ;;
  esac
done
if [ $cuda = 1 ]; then
  # cuDNN, cuBLAS and NCCL open more of their libraries at run time than ldd sees.
  site=$(dirname "$(find "$cache" -path '*/site-packages/torch/lib' -type d | head -1)")
  site=$(dirname "$site")
  mkdir -p "$stage$site/torch"
  cp -a "$site/nvidia" "$stage$site/"
  cp -a "$site/torch/lib" "$stage$site/torch/"
fi
# The installed tree itself, without LibTorch's environment (its libraries are staged above).
mkdir -p "$stage$prefix"
(cd "$prefix" && tar -c --exclude=./cache .) | tar -x -C "$stage$prefix"
# Packages of the C library and the compiler runtime are in every base image already.
printf '%s\n' "${packages[@]}" | grep -v -x -e libc6 -e libgcc-s1 -e 'libstdc++6' | sort -u \
  > "$stage$prefix/share/vdp/runtime-packages"
echo "stage.sh: $(wc -l < "$stage$prefix/share/vdp/runtime-packages") runtime packages, $(du -sh "$stage" | cut -f1) staged (CUDA libraries: $([ $cuda = 1 ] && echo yes || echo no))"
