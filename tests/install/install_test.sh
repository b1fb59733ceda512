#!/usr/bin/env bash
# The example user project (tests/install) built with find_package(vdp) against (1) the build tree
# (CMAKE_PREFIX_PATH=<build>) and (2) an install into a temporary prefix; each run at W=1 and under
# mpirun at W=2, with a bad option (one line, exit 2, no backtrace) and --help.
set -eu
build=$1 src=$2 mpirun=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
for kind in build-tree installed; do
  prefix=$build; [ "$kind" = installed ] && prefix=$work/prefix
  # Only vdp's own location: vdpConfig.cmake finds LibTorch, MPI and the rest itself.
  cmake -S "$src/tests/install" -B "$work/$kind" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
    >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; exit 1; }
  cmake --build "$work/$kind" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
  exe=$work/$kind/curve_fit
  "$exe"
  "$mpirun" -np 2 --oversubscribe --bind-to none "$exe"
  "$exe" --help | grep -q '^usage: curve-fit'
  set +e
  "$exe" --epochs=-1 >"$work/out.log" 2>"$work/err.log"; rc=$?
  set -e
  [ "$rc" = 2 ] || { echo "$kind: bad option: exit $rc, expected 2"; cat "$work/err.log"; exit 1; }
  [ "$(wc -l <"$work/err.log")" = 1 ] && grep -q '^curve-fit: error: .*--epochs' "$work/err.log" ||
    { echo "$kind: bad option: expected one line"; cat "$work/err.log"; exit 1; }
  echo "$kind: curve-fit ok"
done
test -x "$work/prefix/bin/vdp-train" && "$work/prefix/bin/vdp-train" --help >/dev/null
echo "install: 2 passed, 0 failed"
