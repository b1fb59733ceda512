#!/usr/bin/env bash
# Checkpoints end to end, with real processes:
#  1. elastic resume: W=2, m=16 stopped at step 60, resumed at W=3, m=4 (K changes from 2 to 4),
#     equals the uninterrupted W=2 run (float32, <= 1e-5 relative);
#  2. faults: a W=2 run with a checkpoint every step gets SIGKILL (both ranks, or one) at random
#     moments, 5 times, each time resumed with --resume auto; the latest checkpoint must always load, and the
#     finished run must equal the uninterrupted one bit for bit;
#  3. corrupt checkpoints (byte flipped, truncated, manifest missing, another model) exit with 2
#     and name the problem;
#  4. Python's safetensors and torch read vdp's weights to the checksum vdp printed.
set -u
mpirun=$1 bin=$2 python=$3
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passes=0 fails=0
pass() { echo "ok: $*"; passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
mpi=("$mpirun" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1)
common=(--dataset fashion-mnist --model mlp --global-batch 48 --epochs 1
        --optimizer adam --lr 0.002 --lr-schedule constant --eval=false --quiet --seed 7)

"${mpi[@]}" -np 2 "$bin" "${common[@]}" --hidden 64 --micro-batch 16 --max-steps 120 --save-weights "$work/ref.safetensors" \
  --metrics "$work/ref.jsonl" >/dev/null || { echo "FAIL: reference run"; exit 1; }

# 1. elastic resume
"${mpi[@]}" -np 2 "$bin" "${common[@]}" --hidden 64 --micro-batch 16 --max-steps 60 --checkpoint-dir "$work/el" >/dev/null
"${mpi[@]}" -np 3 "$bin" "${common[@]}" --hidden 64 --micro-batch 4 --max-steps 120 --checkpoint-dir "$work/el" --resume auto \
  --save-weights "$work/elastic.safetensors" >"$work/el.out"
if grep -q "resuming from .*step-0000000060 at step 60" "$work/el.out" &&
   "$python" "$here/compare_weights.py" "$work/elastic.safetensors" "$work/ref.safetensors" --rtol 1e-5; then
  pass "elastic resume W=2,m=16,K=2 -> W=3,m=4,K=4"
else
  fail "elastic resume"; cat "$work/el.out"
fi

# 2. SIGKILL at random moments, resume each time. Each attempt waits until training has written a
#    new checkpoint, then kills 0-0.5 s later: with a checkpoint every step, kills land in steps
#    and in checkpoint writes alike.
steps=800
"${mpi[@]}" -np 2 "$bin" "${common[@]}" --hidden 64 --micro-batch 16 --max-steps $steps \
  --save-weights "$work/ref_fault.safetensors" >/dev/null || { echo "FAIL: reference run"; exit 1; }
kills=0 resumed=0 in_write=0
for attempt in 1 2 3 4 5; do
  before=$(ls -d "$work"/fault/step-* 2>/dev/null | tail -1)
  "${mpi[@]}" -np 2 "$bin" "${common[@]}" --hidden 64 --micro-batch 16 --checkpoint-dir "$work/fault" \
    --max-steps $steps --checkpoint-every 1 --keep-last 2 --resume auto --metrics "$work/fault$attempt.jsonl" \
    >"$work/fault$attempt.out" 2>&1 &
  pid=$!
  for _ in $(seq 200); do  # up to 20 s for a checkpoint newer than the one we resumed from
    now=$(ls -d "$work"/fault/step-* 2>/dev/null | tail -1)
    [ -n "$now" ] && [ "$now" != "$before" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  sleep "0.$((RANDOM % 5))$((RANDOM % 10))"
  # Open MPI gives every rank its own process group: kill the rank processes themselves. Odd
  # attempts kill both ranks at once (a lost node), even ones a single rank (mpirun then ends the
  # other).
  ranks=($(pgrep -P "$pid"))
  if [ ${#ranks[@]} -gt 0 ]; then
    if [ $((attempt % 2)) = 1 ]; then victims=("${ranks[@]}"); else victims=("${ranks[$((RANDOM % ${#ranks[@]}))]}"); fi
    kill -KILL "${victims[@]}" 2>/dev/null && kills=$((kills + 1))
  fi
  wait "$pid" 2>/dev/null
  if pgrep -f -- "--metrics $work/fault$attempt.jsonl" >/dev/null; then fail "attempt $attempt left processes behind"; fi
  # rank 0 writes (and flushes) a start record naming the checkpoint it resumed from; mpirun's
  # forwarded stdout may be lost in the kill.
  from=$(grep -o '"resumed_from":"[^"]*"' "$work/fault$attempt.jsonl" 2>/dev/null | head -1 | cut -d'"' -f4)
  [ -n "$from" ] && resumed=$((resumed + 1))
  if grep -q "error" "$work/fault$attempt.out"; then fail "attempt $attempt could not resume"; cat "$work/fault$attempt.out"; fi
  latest=$(ls -d "$work"/fault/step-* 2>/dev/null | tail -1)
  torn=$(ls -d "$work"/fault/.tmp-* 2>/dev/null | wc -l)
  [ "$torn" -gt 0 ] && in_write=$((in_write + 1))
  echo "attempt $attempt: resumed from ${from:-nothing (fresh start)}; killed: $kills so far; latest checkpoint now ${latest##*/}; killed inside a checkpoint write: $([ "$torn" -gt 0 ] && echo yes || echo no)"
done
"${mpi[@]}" -np 2 "$bin" "${common[@]}" --hidden 64 --micro-batch 16 --max-steps $steps --checkpoint-dir "$work/fault" \
  --checkpoint-every 1 --keep-last 2 --resume auto --save-weights "$work/fault.safetensors" >"$work/fault_final.out" 2>&1
if [ "$kills" -ge 3 ] && [ "$resumed" -ge 3 ] &&
   "$python" "$here/compare_weights.py" "$work/fault.safetensors" "$work/ref_fault.safetensors" --exact; then
  pass "after $kills SIGKILLs ($in_write inside a checkpoint write) and $resumed resumes the run equals the uninterrupted one bit for bit"
else
  fail "faults: $kills kills, $resumed resumes (need 3 of each), or the resumed run differs"; cat "$work/fault_final.out"
fi

# 3. corrupt checkpoints: exit code 2, one line naming the problem
ck=$(ls -d "$work"/el/step-* | tail -1)
expect_bad() {  # needle, then the commands that damage a fresh copy in $work/bad
  local needle=$1; shift
  rm -rf "$work/bad" && cp -r "$ck" "$work/bad" && eval "$*"
  "$bin" "${common[@]}" --hidden 64 --micro-batch 16 --max-steps 120 --resume "$work/bad" >"$work/bad.out" 2>"$work/bad.err"
  local rc=$?
  if [ "$rc" = 2 ] && [ "$(wc -l <"$work/bad.err")" = 1 ] && grep -q -- "$needle" "$work/bad.err"; then
    pass "rejected ($needle): $(cat "$work/bad.err")"
  else
    fail "corrupt checkpoint ($*): rc=$rc"; cat "$work/bad.err"
  fi
}
expect_bad "CRC" 'printf "\x55" | dd of="$work/bad/weights.safetensors" bs=1 seek=300 conv=notrunc 2>/dev/null'
expect_bad "truncated" 'truncate -s 1000 "$work/bad/optimizer.safetensors"'
expect_bad "manifest" 'rm "$work/bad/manifest.json"'
rm -rf "$work/bad" && cp -r "$ck" "$work/bad"
"$bin" "${common[@]}" --micro-batch 16 --max-steps 120 --hidden 32 --resume "$work/bad" >/dev/null 2>"$work/bad.err"
rc=$?
if [ "$rc" = 2 ] && grep -q "shape" "$work/bad.err"; then pass "another model rejected: $(cat "$work/bad.err")"
else fail "another model: rc=$rc"; cat "$work/bad.err"; fi

# 4. Python reads our weights
read -r sum l2 < <("$python" -c "
import json,sys
r=[json.loads(l) for l in open('$work/ref.jsonl') if '\"final\"' in l][-1]
print(repr(r['params_sum']), repr(r['params_l2']))")
if "$python" "$here/compare_weights.py" "$work/ref.safetensors" --checksum "$sum" "$l2"; then
  pass "Python safetensors/torch read vdp's weights"
else
  fail "Python checksum"
fi

echo "checkpoints: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
