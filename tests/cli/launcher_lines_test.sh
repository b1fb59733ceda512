#!/usr/bin/env bash
# What a user reads: the epoch line's figures agree (samples / seconds = samples/s); --metrics auto
# names and announces its file; launch/vdp-run and launch/train.sh show a rank's bad-option error as
# its one line (no mpirun boilerplate), as root too; launch/README.md's vdp-run example runs as written.
# Usage: launcher_lines_test.sh VDP_TRAIN REPO BUILD_DIR
set -u
bin=$1 repo=$2 build=$3
# As a user would run them: no Open MPI root override from the environment (the launchers add it).
unset OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

# 1. Epoch lines: "epoch E/N  train_loss L  S samples in Ts: R samples/s  (+Xs eval/checkpoints)".
"$bin" --dataset regression --model mlp --samples 4000 --test-samples 500 --global-batch 32 --micro-batch 8 \
  --epochs 3 --metrics auto >out.txt 2>err.txt || fail "training run failed: $(cat err.txt)"
n=$(grep -c '^epoch ' out.txt)
[ "$n" = 3 ] && pass "three epoch lines" || fail "expected 3 epoch lines, got $n: $(cat out.txt)"
while read -r line; do
  if ! python3 - "$line" <<'PY'
import re, sys
m = re.search(r"(\d+) samples in ([0-9.e+-]+)s: ([0-9.e+-]+) samples/s", sys.argv[1])
assert m, sys.argv[1]
samples, secs, rate = int(m[1]), float(m[2]), float(m[3])
assert samples == 4000, samples
assert abs(samples / secs - rate) <= 0.01 * rate + 1, (samples / secs, rate)
PY
  then fail "epoch line figures disagree: $line"; else pass "epoch line agrees: $line"; fi
done < <(grep '^epoch ' out.txt)
metrics=$(sed -n 's/^metrics: //p' out.txt)
case "$metrics" in
  out/run-????????.metrics.jsonl) [ -s "$metrics" ] && pass "--metrics auto wrote $metrics" || fail "no $metrics" ;;
  *) fail "--metrics auto: unexpected path '$metrics'" ;;
esac

# 2. A bad option through the launchers: exit 2 and one line (set-up's own lines aside).
VDP_TRAIN=$bin "$repo/launch/vdp-run" -n 2 --epoch 2 >out.txt 2>err.txt
rc=$?
if [ "$rc" = 2 ] && [ "$(wc -l <err.txt)" = 1 ] && grep -q "^vdp-train: error: .*--epoch" err.txt; then
  pass "vdp-run: one line, exit 2: $(cat err.txt)"
else
  fail "vdp-run --epoch 2: exit $rc, stderr:"; cat err.txt
fi
VDP_BUILD_DIR=$build VDP_SKIP_APT=1 "$repo/launch/train.sh" --np 2 --epoch 2 >out.txt 2>err.txt
rc=$?
grep -v '^\[vdp setup\]' err.txt >err2.txt
if [ "$rc" = 2 ] && [ "$(wc -l <err2.txt)" = 1 ] && grep -q "^vdp-train: error: .*--epoch" err2.txt; then
  pass "train.sh: one line, exit 2: $(cat err2.txt)"
else
  fail "train.sh --epoch 2: exit $rc, stderr:"; cat err.txt
fi

# The launchers' OpenMP waiting (launch/README.md, "Threads"): a short spin unless the caller chose.
dry=$(env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY VDP_TRAIN=$bin "$repo/launch/vdp-run" -n 2 --dry --max-steps 1)
case "$dry" in *"-x GOMP_SPINCOUNT=3000"*) pass "vdp-run: GOMP_SPINCOUNT=3000 by default" ;;
  *) fail "vdp-run --dry without GOMP_SPINCOUNT=3000: $dry" ;; esac
dry=$(env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=PASSIVE VDP_TRAIN=$bin "$repo/launch/vdp-run" -n 2 --dry --max-steps 1)
case "$dry" in *GOMP_SPINCOUNT*) fail "vdp-run overrode the caller's OMP_WAIT_POLICY: $dry" ;;
  *"-x OMP_WAIT_POLICY"*) pass "vdp-run: the caller's OMP_WAIT_POLICY kept" ;;
  *) fail "vdp-run --dry dropped OMP_WAIT_POLICY: $dry" ;; esac

# 3. launch/README.md's example, as written (two ranks from the INI file), shortened by --max-steps.
VDP_TRAIN=$bin "$repo/launch/vdp-run" -n 2 "$repo/configs/fashion_mnist.ini" --max-steps 2 --quiet >out.txt 2>err.txt
rc=$?
if [ "$rc" = 0 ] && grep -q '^done: 2 steps' out.txt && ls out/fashion_mnist-*.metrics.jsonl >/dev/null 2>&1; then
  pass "launch/vdp-run -n 2 configs/fashion_mnist.ini runs (metrics in $(ls out/fashion_mnist-*.metrics.jsonl))"
else
  fail "launch/README.md vdp-run example: exit $rc"; cat out.txt err.txt
fi
# 4. configs/resnet_fmnist.ini as written, one small step (resnet18, syncbatch, channels-last).
"$bin" "$repo/configs/resnet_fmnist.ini" --max-steps 1 --global-batch 4 --micro-batch 2 --eval false --metrics '' \
  --quiet >out.txt 2>err.txt
rc=$?
if [ "$rc" = 0 ] && grep -q '^done: 1 steps' out.txt; then pass "configs/resnet_fmnist.ini trains"; else
  fail "configs/resnet_fmnist.ini: exit $rc"; cat out.txt err.txt; fi
# 5. The progress line (with its ETA) under mpirun, whose pipe is not a terminal: shown on rank 0 when
#    the launcher says a person watches (VDP_PROGRESS=1, set by launch/train.sh on a terminal), never
#    otherwise.
for want in 1 ""; do
  VDP_PROGRESS=$want mpirun --allow-run-as-root --oversubscribe -np 2 -x VDP_PROGRESS "$bin" --dataset regression \
    --model mlp --samples 20000 --global-batch 16 --micro-batch 4 --epochs 1 --metrics '' >out.txt 2>err.txt
  n=$(grep -o 'ETA [0-9hms?]*' err.txt | wc -l)
  if [ "$want" = 1 ]; then
    [ "$n" -ge 1 ] && pass "VDP_PROGRESS=1 under mpirun: $n progress updates with an ETA on stderr" || fail "VDP_PROGRESS=1: no progress line"
  else
    [ "$n" = 0 ] && pass "no VDP_PROGRESS, stderr a file: no progress line" || fail "a progress line without VDP_PROGRESS: $n"
  fi
done
echo "launcher lines: $failures failed"
[ "$failures" = 0 ]
