#!/usr/bin/env bash
# Rank 1 reads a corrupt data file that rank 0 reads fine (MPMD launch with per-rank --data-dir):
# the job must end within 30 s with a non-zero code and rank 1's message, never hang.
set -u
mpirun=$1 bin=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fm=/usr/share/datasets/fashion-mnist
[ -d "$fm" ] || { echo "dataset-fashion-mnist not installed"; exit 1; }
mkdir -p "$work/bad"
cp "$fm"/*.gz "$work/bad/"
head -c 200000 "$fm/train-images-idx3-ubyte.gz" >"$work/bad/train-images-idx3-ubyte.gz"
common=(--model mlp --global-batch 64 --micro-batch 32 --epochs 1)
start=$(date +%s)
timeout 60 "$mpirun" --oversubscribe --bind-to none -np 1 "$bin" "${common[@]}" --data-dir "$fm" \
  : -np 1 "$bin" "${common[@]}" --data-dir "$work/bad" >"$work/out" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$work/out" | head -20
ok=1
[ "$rc" -ne 0 ] || { echo "FAIL: exit code 0"; ok=0; }
[ "$rc" -ne 124 ] || { echo "FAIL: the job hung (killed by timeout)"; ok=0; }
[ "$elapsed" -lt 30 ] || { echo "FAIL: took ${elapsed}s (limit 30s)"; ok=0; }
grep -q "rank 1 of 2" "$work/out" && grep -q "train-images-idx3-ubyte.gz" "$work/out" ||
  { echo "FAIL: rank 1's message is missing"; ok=0; }
echo "rank failure: exit code $rc after ${elapsed}s"
[ "$ok" = 1 ] && echo "1 passed, 0 failed" || { echo "0 passed, 1 failed"; exit 1; }
