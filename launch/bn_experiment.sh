#!/usr/bin/env bash
# The BatchNorm caveat under accumulation, measured: Fashion-MNIST, fmnist-cnn, global batch 64,
# one epoch (938 optimizer steps), final test accuracy for micro-batch 2 with norm = batch (W=1,
# K=32: statistics over 2 samples), syncbatch (W=2, K=16: statistics over the 2x2 samples of a
# micro-step), group (W=1, K=32), and the reference micro-batch 64 with batch norm (K=1).
#   launch/bn_experiment.sh [--epochs N] [more vdp-train options...]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/launch/setup.sh" >&2
bin=${VDP_BUILD_DIR:-$repo/build}/vdp-train
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mpi=(mpirun -np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1)
[ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
common=(--dataset fashion-mnist --model fmnist-cnn --global-batch 64 --epochs 1 --optimizer sgd --lr 0.05
        --momentum 0.9 --lr-schedule cosine --warmup-steps 50 --seed 1 --quiet "$@")

run() {  # name, ranks, args...
  local name=$1 np=$2; shift 2
  local start=$SECONDS
  if [ "$np" = 1 ]; then "$bin" "${common[@]}" "$@" --metrics "$out/$name.jsonl" >/dev/null
  else "${mpi[@]}" "$bin" "${common[@]}" "$@" --metrics "$out/$name.jsonl" >/dev/null; fi
  python3 - "$out/$name.jsonl" "$name" "$np" "$((SECONDS - start))" "$*" <<'PY'
import json, sys
final = [json.loads(l) for l in open(sys.argv[1]) if '"final"' in l][-1]
print(f"{sys.argv[2]:<26} W={sys.argv[3]}  K={final['micro_steps_per_window']:<3} test_accuracy {final['test_accuracy']:.4f}"
      f"  ({sys.argv[4]}s)")
PY
}

echo "BatchNorm under accumulation: Fashion-MNIST, fmnist-cnn, B=64, 1 epoch, seed 1"
run "m=2 norm=batch" 1 --micro-batch 2 --norm batch
run "m=2 norm=syncbatch" 2 --micro-batch 2 --norm syncbatch
run "m=2 norm=group" 1 --micro-batch 2 --norm group
run "m=64 norm=batch (ref)" 1 --micro-batch 64 --norm batch
