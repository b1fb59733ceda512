#!/usr/bin/env bash
# Trains with vdp-train on this machine: sets up and builds first (launch/setup.sh), then starts
# W ranks with mpirun (default 2; one rank per GPU with --device cuda).
#   launch/train.sh [CONFIG.ini] [--np N] [more vdp-train options...]
# Default config: configs/fashion_mnist.ini. Options after the config override it.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
config=$repo/configs/fashion_mnist.ini
np=2
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then config=$1; shift; fi
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --np) np=${2:?--np needs a number}; shift 2 ;;
    --np=*) np=${1#--np=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
case "$np" in ''|*[!0-9]*|0) echo "launch/train.sh: --np must be a positive integer, not '$np'" >&2; exit 2 ;; esac
[ -f "$config" ] || { echo "launch/train.sh: config file '$config' not found" >&2; exit 2; }

# Set-up and build what training needs (launch/setup.sh with VDP_FOR=train: no test tooling, only
# vdp-train built); each phase says how long it took and where its log is.
data_dir=$(sed -n 's/^[[:space:]]*data-dir[[:space:]]*=[[:space:]]*\([^#;[:space:]]*\).*/\1/p' "$config" | tail -n 1)
case " ${args[*]-} " in *" --data-dir"*) data_dir="" ;; esac
pydoc=0
[ "$data_dir" = out/pydoc_shards ] && [ ! -f out/pydoc_shards/train_000000.bin ] && pydoc=1
VDP_FOR=train VDP_PYDOC=$pydoc "$repo/launch/setup.sh" >&2 || { echo "launch/train.sh: the set-up failed (above)" >&2; exit 1; }
bin=${VDP_BUILD_DIR:-$repo/build}/vdp-train
# Data made on first use: the Python-documentation corpus of configs/gpt_*.ini (a --data-dir given
# after the config wins; only the corpus's default folder is made here).
if [ "$pydoc" = 1 ]; then
  echo "launch/train.sh: $config reads out/pydoc_shards, which does not exist yet: making it (launch/pydoc_shards.sh)" >&2
  "$repo/launch/pydoc_shards.sh" out/pydoc_shards >&2 || { echo "launch/train.sh: launch/pydoc_shards.sh failed" >&2; exit 1; }
fi
if [ "$np" -eq 1 ]; then
  exec "$bin" --config "$config" "${args[@]}"
fi
# The progress line (epoch, step, loss, ETA) on rank 0: mpirun hands the ranks' stderr over a pipe,
# so say whether a person is watching this terminal.
if [ -t 2 ] && [ -z "${VDP_PROGRESS:-}" ]; then export VDP_PROGRESS=1; fi
mpi_flags=(-np "$np" --oversubscribe --bind-to none)
[ "$(id -u)" = 0 ] && mpi_flags+=(--allow-run-as-root)
# Each rank gets an equal share of the cores for its intra-op threads.
threads=$(( $(nproc) / np )); [ "$threads" -ge 1 ] || threads=1
# OpenMP's waiting threads spin briefly, not for libgomp's default 300000 rounds: on a busy
# machine a rank's threads otherwise burn the cores the others need (launch/README.md, "Threads").
if [ -z "${GOMP_SPINCOUNT:-}${OMP_WAIT_POLICY:-}" ]; then export GOMP_SPINCOUNT=3000; fi
for v in GOMP_SPINCOUNT OMP_WAIT_POLICY; do if [ -n "${!v:-}" ]; then mpi_flags+=(-x "$v"); fi; done
# SIGTERM/SIGINT/SIGUSR1 become a graceful stop of every rank (launch/mpirun-graceful).
[ -n "${VDP_PROGRESS:-}" ] && mpi_flags+=(-x VDP_PROGRESS)
exec "$repo/launch/mpirun-graceful" "${mpi_flags[@]}" -x OMP_NUM_THREADS="$threads" "$bin" --config "$config" "${args[@]}"
