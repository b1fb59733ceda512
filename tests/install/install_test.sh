#!/usr/bin/env bash
# Installs vdp from the build tree into a temporary prefix, builds the example user project
# against it with find_package(vdp), and runs it at W=1 and under mpirun at W=2.
set -eu
build=$1 src=$2 torch_prefix=$3 mpirun=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/tests/install" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix;$torch_prefix" >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$work/build/curve_fit"
"$mpirun" -np 2 --oversubscribe --bind-to none "$work/build/curve_fit"
test -x "$work/prefix/bin/vdp-train" && "$work/prefix/bin/vdp-train" --help >/dev/null
echo "install: 1 passed, 0 failed"
