#!/usr/bin/env bash
# Faults a job must survive or end cleanly on (include/vdp/README.md, "Failures and stops"), with real processes under mpirun:
#  1. a stalled rank (SIGSTOP) with --timeout 5 at W=2 and W=3: the job ends with exit 4 in < 30 s,
#     one line naming the collective and the rank that did not arrive;
#  2. a rank that throws while the others are inside a collective (rank 0 cannot write its metrics:
#     /dev/full): the job ends in < 10 s with exit 3 and rank 0's line;
#  3. SIGTERM to the launcher (launch/vdp-run, i.e. mpirun through launch/mpirun-graceful) in the
#     middle of a W=2 run: every rank stops at the same window boundary, a checkpoint is written,
#     exit 5; --resume auto then ends with weights equal bit for bit to an uninterrupted run's, and
#     the metrics file holds every step exactly once; SIGUSR1 to a bare mpirun does the same;
#  4. a second run on the same --checkpoint-dir: exit 2 naming the holder's pid, nothing written;
#  5. a corrupt newest checkpoint: --resume auto warns once and falls back to the newest good one.
set -u
mpirun=$1 bin=$2 python=$3
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
passes=0 fails=0
pass() { echo "ok: $*"; passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# -q: no launcher banners, so a job's stderr is the ranks' own lines.
mpi=("$mpirun" -q --oversubscribe --bind-to none -x OMP_NUM_THREADS=1)
long=(--dataset regression --model mlp --hidden 32 --samples 400000 --global-batch 32 --micro-batch 8 --epochs 5
      --eval=false --quiet)
now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc | cut -d. -f1; }

# The pids of the ranks of the job whose mpirun is $1, lowest rank first.
ranks_of() { pgrep -P "$1" -f vdp-train | sort -n; }

# 1. stalled rank
for w in 2 3; do
  t0=$(now)
  "${mpi[@]}" -np $w "$bin" "${long[@]}" --timeout 5 >"$work/stall$w.out" 2>"$work/stall$w.err" &
  mp=$!
  sleep 3
  victim=$(ranks_of $mp | tail -1)
  [ -n "$victim" ] && kill -STOP "$victim"
  ( sleep 60; kill -9 $mp 2>/dev/null ) & guard=$!
  wait $mp; rc=$?
  kill $guard 2>/dev/null; [ -n "$victim" ] && kill -9 "$victim" 2>/dev/null
  secs=$(elapsed "$t0")
  # Lines of vdp itself; Open MPI may add its own when the stopped rank is killed mid-transfer.
  lines=$(grep -c '^vdp-train' "$work/stall$w.err")
  if [ "$rc" -eq 4 ] && [ "$secs" -lt 30 ] && grep -q "timed out after 5 s .* did not arrive" "$work/stall$w.err" &&
     grep -q "rank(s) $((w - 1)) did not arrive" "$work/stall$w.err" && [ "$lines" -eq 1 ]; then
    pass "stalled rank at W=$w: exit 4 after ${secs}s, one line: $(cat "$work/stall$w.err")"
  else
    fail "stalled rank at W=$w: rc=$rc after ${secs}s, $lines stderr lines:"; cat "$work/stall$w.err"
  fi
done

# 2. a rank that throws while the others wait in a collective
t0=$(now)
timeout 60 "${mpi[@]}" -np 3 "$bin" "${long[@]}" --metrics /dev/full >"$work/throw.out" 2>"$work/throw.err"
rc=$?
secs=$(elapsed "$t0")
if [ "$rc" -eq 3 ] && [ "$secs" -lt 10 ] && grep -q "I/O error \[rank 0 of 3" "$work/throw.err"; then
  pass "rank 0 throws inside the job: exit 3 after ${secs}s: $(head -1 "$work/throw.err")"
else
  fail "throwing rank: rc=$rc after ${secs}s:"; cat "$work/throw.err"
fi

# 3. SIGTERM, then resume: bit-exact
run=(--dataset regression --model mlp --hidden 32 --samples 320000 --global-batch 32 --micro-batch 8 --epochs 1
     --optimizer adam --lr 0.001 --eval=false --quiet --seed 4)
total=$((320000 / 32))
# Waits (at most 60 s) until folder $1 holds a checkpoint: the job is training, far from its end.
wait_for_checkpoint() { for _ in $(seq 300); do ls -d "$1"/step-* >/dev/null 2>&1 && return; sleep 0.2; done; }
"${mpi[@]}" -np 2 "$bin" "${run[@]}" --save-weights "$work/ref.safetensors" >/dev/null 2>&1 || fail "reference run"
VDP_TRAIN=$bin "$repo/launch/vdp-run" -n 2 "${run[@]}" --checkpoint-dir "$work/ck" --checkpoint-every 1000 \
  --metrics "$work/m.jsonl" >"$work/term.out" 2>"$work/term.err" &
mp=$!
wait_for_checkpoint "$work/ck"
kill -TERM $mp
wait $mp; rc=$?
# The launcher turns SIGTERM into SIGUSR1 for mpirun, which forwards it to the ranks.
stopped_at=$(sed -n 's/.*stopped by SIGUSR1 after step \([0-9]*\).*/\1/p' "$work/term.err")
if [ "$rc" -eq 5 ] && [ -n "$stopped_at" ] && [ "$stopped_at" -lt "$total" ] && [ -d "$work/ck/step-$(printf %010d "$stopped_at")" ] &&
   [ "$(grep -c . "$work/term.err")" -eq 1 ]; then
  pass "SIGTERM to the launcher: exit 5 after step $stopped_at with its checkpoint: $(cat "$work/term.err")"
else
  fail "SIGTERM: rc=$rc, stopped at '$stopped_at':"; cat "$work/term.err"; ls "$work/ck"
fi
"${mpi[@]}" -np 2 "$bin" "${run[@]}" --checkpoint-dir "$work/ck" --checkpoint-every 1000 --resume auto \
  --metrics "$work/m.jsonl" --save-weights "$work/resumed.safetensors" >"$work/resume.out" 2>&1
if cmp -s "$work/ref.safetensors" "$work/resumed.safetensors"; then
  pass "SIGTERM at step $stopped_at + --resume auto equals the uninterrupted run bit for bit"
else
  fail "resumed weights differ from the uninterrupted run's"; cat "$work/resume.out"
fi
"$python" - "$work/m.jsonl" <<'PY' && pass "metrics after stop and resume: every step once" || fail "metrics after resume"
import json, sys
steps = [json.loads(l)["step"] for l in open(sys.argv[1]) if json.loads(l)["event"] == "step"]
total = 2 * 60000 // 32
assert steps == list(range(320000 // 32)), (len(steps), [s for s in steps if steps.count(s) > 1][:5])
PY
# SIGUSR1 straight to mpirun (Slurm's --signal reaches the ranks the same way): a graceful stop.
"${mpi[@]}" -np 2 "$bin" "${long[@]}" --checkpoint-dir "$work/ck2" --checkpoint-every 1000 >"$work/usr1.out" \
  2>"$work/usr1.err" &
mp=$!
wait_for_checkpoint "$work/ck2"
kill -USR1 $mp
wait $mp; rc=$?
if [ "$rc" -eq 5 ] && grep -q "stopped by SIGUSR1 after step" "$work/usr1.err"; then
  pass "SIGUSR1 to mpirun: exit 5, $(cat "$work/usr1.err")"
else
  fail "SIGUSR1 to mpirun: rc=$rc"; cat "$work/usr1.err"
fi

# 4. a second run on the same folder
"${mpi[@]}" -np 2 "$bin" "${long[@]}" --checkpoint-dir "$work/busy" --checkpoint-every 100000 >/dev/null 2>&1 &
mp=$!
for _ in $(seq 50); do [ -e "$work/busy/.vdp-lock" ] && break; sleep 0.2; done
sleep 1
holder=$(ranks_of $mp | head -1)
"${mpi[@]}" -np 2 "$bin" "${long[@]}" --checkpoint-dir "$work/busy" --resume auto --metrics "$work/second.jsonl" \
  >"$work/second.out" 2>"$work/second.err"
rc=$?
kill -9 $mp 2>/dev/null; wait $mp 2>/dev/null
if [ "$rc" -eq 2 ] && grep -q "is in use by another run (pid $holder on host" "$work/second.err" &&
   [ "$(grep -c . "$work/second.err")" -eq 1 ] && [ ! -e "$work/second.jsonl" ]; then
  pass "second run on a locked folder: exit 2, $(cat "$work/second.err")"
else
  fail "second run on a locked folder: rc=$rc (holder pid $holder):"; cat "$work/second.err"
fi

# 5. corrupt newest checkpoint: fall back with one warning
small=(--dataset regression --model mlp --hidden 8 --samples 64 --global-batch 8 --micro-batch 4 --eval=false --quiet)
"$bin" "${small[@]}" --max-steps 6 --checkpoint-dir "$work/fb" --checkpoint-every 3 --keep-last 0 >/dev/null 2>&1
printf 'X' | dd of="$work/fb/step-0000000006/weights.safetensors" bs=1 seek=100 conv=notrunc 2>/dev/null
"$bin" "${small[@]}" --max-steps 8 --checkpoint-dir "$work/fb" --resume auto >"$work/fb.out" 2>"$work/fb.err"
rc=$?
if [ "$rc" -eq 0 ] && grep -q "resuming from .*step-0000000003 at step 3" "$work/fb.out" &&
   [ "$(grep -c . "$work/fb.err")" -eq 1 ] && grep -q "warning: skipping checkpoint .*step-0000000006.*CRC-32" "$work/fb.err"; then
  pass "corrupt newest checkpoint skipped: $(cat "$work/fb.err")"
else
  fail "fallback past a corrupt checkpoint: rc=$rc"; cat "$work/fb.out" "$work/fb.err"
fi

echo "faults: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
