#!/usr/bin/env bash
# Packs a CUDA build made on this machine for a GPU host that has PyTorch 2.11 (cu130) in its
# python3 but no Open MPI, Boost or build tools (the project's lent GPU machines); then, there,
# launch/gpu-check.sh runs the GPU check in one call.
#   launch/gpu-kit.sh [BUILD_DIR] [--data] [--kit DIR]     (default BUILD_DIR: build)
# Writes .gpu-kit/ in the project root (ignored by git; --kit: elsewhere):
#   bin/   vdp-train, vdp-bench and the test programs of BUILD_DIR/tests, stripped
#   lib/   the shared libraries they need that are neither glibc's nor LibTorch/CUDA's
#   data/  the Fashion-MNIST .gz files, with --data (launch/gpu-check.sh needs them)
#   COMMIT the commit and build packed
#   env.sh source it on the GPU host from the project root: the host's torch and nvidia libraries
#          and lib/ on LD_LIBRARY_PATH, bin/ on PATH
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=build data=0 kit=.gpu-kit
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=1 ;;
    --kit) [ $# -ge 2 ] || { echo "gpu-kit.sh: --kit needs a folder" >&2; exit 2; }; kit=$2; shift ;;
    -*) echo "gpu-kit.sh: unknown option '$1' (usage: launch/gpu-kit.sh [BUILD_DIR] [--data] [--kit DIR])" >&2; exit 2 ;;
    *) build=$1 ;;
  esac
  shift
done
cd "$repo"
# Only a kit (or an empty or new folder) is replaced.
if [ -e "$kit" ] && [ ! -f "$kit/env.sh" ] && [ -n "$(ls -A "$kit" 2>/dev/null)" ]; then
  echo "gpu-kit.sh: '$kit' is not a kit made by gpu-kit.sh and not empty; give a new or empty folder with --kit" >&2
  exit 2
fi
[ -x "$build/vdp-train" ] || { echo "gpu-kit.sh: no $build/vdp-train: build first (launch/setup.sh)" >&2; exit 2; }
grep -q "VDP_WITH_CUDA:BOOL=ON" "$build/CMakeCache.txt" 2>/dev/null ||
  echo "gpu-kit.sh: warning: $build was configured without CUDA; --device cuda will not work there" >&2
rm -rf "$kit"
mkdir -p "$kit/bin" "$kit/lib" || { echo "gpu-kit.sh: cannot create '$kit'" >&2; exit 2; }
bins=("$build/vdp-train" "$build/vdp-bench")
while IFS= read -r f; do bins+=("$f"); done < <(find "$build/tests" -maxdepth 2 -type f -perm -u+x ! -name '*.sh' 2>/dev/null)
cp "${bins[@]}" "$kit/bin/"
strip -s "$kit"/bin/* 2>/dev/null || true
for b in "$kit"/bin/*; do ldd "$b" 2>/dev/null || true; done | awk '/=> \//{print $3}' | sort -u | while read -r lib; do
  case "$lib" in
    */venv*|*/torch/*|*/nvidia/*|*/cuda*|*/libc.so*|*/libm.so*|*/libpthread*|*/libdl.so*|*/librt.so*|*/ld-linux*|*/libstdc++*|*/libgcc_s*) ;;
    *) cp -L "$lib" "$kit/lib/" ;;
  esac
done
if [ $data -eq 1 ]; then mkdir -p "$kit/data"; cp /usr/share/datasets/fashion-mnist/*.gz "$kit/data/"; fi
# What was packed, for the GPU check's summary (launch/gpu-check.sh).
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit with uncommitted changes"
echo "$commit, packed $(date -u '+%Y-%m-%d %H:%M UTC') from $build ($(grep -q "VDP_WITH_CUDA:BOOL=ON" "$build/CMakeCache.txt" 2>/dev/null && echo CUDA || echo CPU-only) build)" >"$kit/COMMIT"
cat >"$kit/env.sh" <<'ENV'
# Source on the GPU host: . .gpu-kit/env.sh (the kit's own folder, wherever it lies)
_vdp_kit=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_vdp_sp=$("${VDP_PYTHON:-python3}" -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))')
export LD_LIBRARY_PATH=$_vdp_sp/torch/lib:$(ls -d "$_vdp_sp"/nvidia/*/lib 2>/dev/null | tr '\n' ':')$_vdp_kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=$_vdp_kit/bin:$PATH
export VDP_GPU_KIT=$_vdp_kit
unset _vdp_sp _vdp_kit
ENV
echo "gpu-kit.sh: packed $(ls "$kit/bin" | wc -l) programs and $(ls "$kit/lib" | wc -l) libraries into $kit ($(du -sh "$kit" | cut -f1)); on the GPU host: . $kit/env.sh && launch/gpu-check.sh"
