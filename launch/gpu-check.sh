#!/usr/bin/env bash
# The GPU check: everything a short lease on one GPU host should answer, in one call that never
# stops at the first failure and always leaves one summary. Pack on the build machine, run there:
#   launch/setup.sh && launch/gpu-kit.sh            (here: a CUDA build, packed into .gpu-kit/)
#   . .gpu-kit/env.sh && launch/gpu-check.sh --out "$OUT"      (on the GPU host, from the project root)
#   launch/gpu-check.sh --dry-run --out DIR         (here, on the CPU: the same steps, tiny and on the CPU)
#
# Steps, in this order, each under its own time limit (a step that runs over is stopped, reported
# as TIMEOUT with what it printed, and the next one starts):
#   1. tests      every test of the GPU test program (vdp_gpu_tests); a skipped test is a failure
#   2. window     the reduced GPU benchmark (tests/reference/window_bench.py): vdp eager, PyTorch
#                 eager, vdp --cuda-graphs and PyTorch graphed by hand at B=128 m=4, 32 and B=1024
#                 m=256, 1024, fp32 and bf16; peak memory at K=16 over K=1; busy fraction at m=1024
#   3. exact      two --deterministic runs, and a run killed (SIGKILL) after its first checkpoint and
#                 resumed, compared bit for bit with the uninterrupted one
#   4. gpt        the GPT bench (tests/reference/gpt_gpu_bench.py) at GPT-2 small, m:K = 4:4, bf16
# Budget: 120 + 200 + 50 + 80 = 450 s of limits, 7.5 minutes; the check's own work around them takes
# seconds. How the limits were sized is in launch/README.md ("The GPU check").
#
# Writes DIR/summary.txt (one line per step, then each step's figures) and DIR/logs/<step>.log.
# Exit status: 0 when every step passed, 1 otherwise, 2 for a bad command line.
set -uo pipefail

usage="usage: launch/gpu-check.sh [--out DIR] [--dry-run] [--only STEP[,STEP...]] [--scale X] [--kit DIR]
  --out DIR   where summary.txt and logs/ go (default: gpu-check-out; \$OUT on a lent GPU host)
  --kit DIR   the packed build (default: the one env.sh came from, else .gpu-kit)
  --dry-run   on the CPU, tiny sizes: checks the kit, the steps and the summary, not the GPU
  --only      run these steps only (tests, window, exact, gpt)
  --scale X   multiply every step's time limit by X (a slower GPU, a longer lease)"
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=gpu-check-out dry=0 only="tests,window,exact,gpt" scale=1 kit=${VDP_GPU_KIT:-$repo/.gpu-kit}
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "gpu-check.sh: --out needs a folder" >&2; echo "$usage" >&2; exit 2; }; out=$2; shift ;;
    --dry-run) dry=1 ;;
    --kit) [ $# -ge 2 ] || { echo "gpu-check.sh: --kit needs a folder" >&2; exit 2; }; kit=$2; shift ;;
    --only) [ $# -ge 2 ] || { echo "gpu-check.sh: --only needs step names" >&2; exit 2; }; only=$2; shift ;;
    --scale) [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] && [ "$2" != 0 ] ||
               { echo "gpu-check.sh: --scale needs a positive number (e.g. 1.5)" >&2; exit 2; }; scale=$2; shift ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "gpu-check.sh: unknown argument '$1'" >&2; echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
for s in ${only//,/ }; do
  case "$s" in tests|window|exact|gpt) ;; *) echo "gpu-check.sh: unknown step '$s' in --only (tests, window, exact, gpt)" >&2; exit 2 ;; esac
done
[ -d "$kit" ] && kit=$(cd "$kit" && pwd)
cd "$repo"
[ -x "$kit/bin/vdp-train" ] || { echo "gpu-check.sh: no packed build in $kit: run launch/gpu-kit.sh on the build machine first" >&2; exit 2; }
mkdir -p "$out/logs" || { echo "gpu-check.sh: cannot create '$out'" >&2; exit 2; }
out=$(cd "$out" && pwd)
summary=$out/summary.txt
work=$(mktemp -d "${TMPDIR:-/tmp}/vdp-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
python=${VDP_PYTHON:-$(command -v python3 || echo python3)}  # the one with torch
export PATH=$kit/bin:$PATH
data=$kit/data
[ -d "$data" ] || data=/usr/share/datasets/fashion-mnist

if [ $dry -eq 1 ]; then device=cpu; else device=cuda; fi
limit() { awk -v s="$1" -v x="$scale" 'BEGIN { printf "%d", s * x + 0.5 }'; }

gpu_name=cpu
if [ $dry -eq 0 ]; then
  gpu_name=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
  [ -n "$gpu_name" ] || gpu_name=$("$python" -c 'import torch; print(torch.cuda.get_device_name())' 2>/dev/null || echo "no GPU visible")
fi
{
  echo "vdp GPU check$([ $dry -eq 1 ] && echo ' (dry run on the CPU)')"
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "build: $(cat "$kit/COMMIT" 2>/dev/null || echo unknown)"
  echo "device: $gpu_name"
  echo "torch: $("$python" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' 2>/dev/null || echo none)"
  echo "limits (s): tests $(limit 120), window $(limit 200), exact $(limit 50), gpt $(limit 80)"
  echo
} >"$summary"
results=() details=() failed=0

# step NAME LIMIT_S FUNCTION: runs FUNCTION under the limit with its output in logs/NAME.log; the
# function's last line of the form "RESULT: ..." (if any) is the step's one-line result.
step() {
  local name=$1 lim=$2 fn=$3 log=$out/logs/$1.log t0 rc status
  case ",$only," in *",$name,"*) ;; *) return 0 ;; esac
  echo "[gpu-check] $name (limit ${lim} s) ..." >&2
  t0=$(date +%s.%N)
  # A process group of its own, so that the limit stops everything the step started.
  setsid bash -c "$(declare -f "$fn" bench_row exact_run); $(declare -p device data python work dry 2>/dev/null); $fn" \
    >"$log" 2>&1 &
  local pid=$! waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge "$((lim * 10))" ]; then
      kill -TERM -- "-$pid" 2>/dev/null; sleep 2; kill -KILL -- "-$pid" 2>/dev/null
      break
    fi
    sleep 0.1; waited=$((waited + 1))
  done
  wait "$pid"; rc=$?
  local secs; secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  local said; said=$(grep '^RESULT: ' "$log" | tail -1 | sed 's/^RESULT: //')
  if [ "$waited" -ge "$((lim * 10))" ]; then status=TIMEOUT; said="stopped at its limit of $lim s${said:+; $said}"
  elif [ $rc -eq 0 ]; then status=PASS
  elif [ $rc -eq 77 ]; then status=SKIP
  else status=FAIL; [ -n "$said" ] || said="exit $rc: $(grep -v '^\s*$' "$log" | tail -1 | cut -c1-200)"
  fi
  [ "$status" = PASS ] || [ "$status" = SKIP ] || failed=1
  results+=("$(printf '%-7s %-7s %6s s  %s' "[$status]" "$name" "$secs" "$said")")
  details+=("== $name: $status ($secs s), log: logs/$name.log")
  details+=("$(grep '^FIG: ' "$log" | sed 's/^FIG: //')")
  echo "[gpu-check] $name: $status in $secs s${said:+: $said}" >&2
}

# 1. The GPU test program, every test; on the GPU none may skip.
run_tests() {
  local bin=vdp_gpu_tests xml=$work/tests.xml
  command -v "$bin" >/dev/null || { echo "RESULT: no vdp_gpu_tests in the kit (a build without CUDA?)"; return 1; }
  "$bin" --gtest_output="xml:$xml"; local rc=$?
  [ -f "$xml" ] || { echo "RESULT: the test program ended (exit $rc) before writing its report"; return 1; }
  local n f s
  n=$(grep -o '<testsuites [^>]*' "$xml" | grep -o ' tests="[0-9]*"' | grep -o '[0-9]*')
  f=$(grep -o '<testsuites [^>]*' "$xml" | grep -o ' failures="[0-9]*"' | grep -o '[0-9]*')
  s=$(grep -c '<skipped' "$xml")
  echo "FIG: $n tests, $f failed, $s skipped"
  grep -B1 '<failure' "$xml" | grep -o 'testcase name="[^"]*"[^>]*classname="[^"]*"' |
    sed 's/testcase name="\([^"]*\)".*classname="\([^"]*\)"/FIG:   failed: \2.\1/'
  echo "RESULT: $n tests, $f failed, $s skipped"
  [ "$rc" -eq 0 ] || return 1
  if [ "$dry" -eq 0 ] && [ "$s" -gt 0 ]; then return 1; fi
  [ "$dry" -eq 1 ] && [ "$s" -gt 0 ] && return 77
  return 0
}

# 2. The reduced window benchmark: vdp eager, PyTorch eager, vdp graphs, PyTorch graphed; memory; busy.
run_window() {
  local rows=(128:4 128:32 1024:256 1024:1024) precisions=(fp32 bf16) steps=60 warmup=20 mm=64 busy=1024
  if [ "$dry" -eq 1 ]; then rows=(128:32) precisions=(fp32) steps=12 warmup=4 mm=8 busy=32; fi
  "$python" tests/reference/window_bench.py --vdp-train "$(command -v vdp-train)" --device "$device" \
    --data-dir "$data" --rows "${rows[@]}" --precisions "${precisions[@]}" --steps $steps --warmup $warmup \
    --memory-m $mm --busy-m $busy --no-resident --keep-going | tee "$work/window.txt"
  local rc=${PIPESTATUS[0]}
  sed 's/^/FIG: /' "$work/window.txt"
  local errors; errors=$(grep -c 'failed' "$work/window.txt")
  echo "RESULT: $(grep -c '^ *[0-9]' "$work/window.txt") rows; $errors column(s) failed (see the table)"
  [ "$rc" -eq 0 ] && [ "$errors" -eq 0 ]
}

# One training run of the exactness step: vdp-train (exec'd: the caller's pid is vdp-train's) with
# the common options and ARGS.
exact_run() {
  local steps=400
  [ "$dry" -eq 1 ] && steps=40
  exec vdp-train --dataset fashion-mnist --data-dir "$data" --model fmnist-cnn --device "$device" --global-batch 128 \
    --micro-batch 32 --max-steps $steps --optimizer sgd --lr 0.05 --momentum 0.9 --seed 3 --deterministic \
    --eval=false --quiet "$@"
}

# 3. Two --deterministic runs and a killed-and-resumed one, bit for bit.
run_exact() {
  local a=$work/a.safetensors b=$work/b.safetensors c=$work/c.safetensors ck=$work/ck ok=0
  (exact_run --save-weights "$a") || { echo "RESULT: the first run failed"; return 1; }
  (exact_run --save-weights "$b") || { echo "RESULT: the second run failed"; return 1; }
  if cmp -s "$a" "$b"; then echo "FIG: two --deterministic runs: bit-identical"
  else echo "FIG: two --deterministic runs: DIFFER"; ok=1; fi
  (exact_run --checkpoint-dir "$ck" --checkpoint-every 10 --save-weights "$c") & local pid=$!
  local i=0
  while [ $i -lt 6000 ] && ! ls -d "$ck"/step-* >/dev/null 2>&1 && kill -0 $pid 2>/dev/null; do sleep 0.01; i=$((i + 1)); done
  kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
  local at; at=$(ls -d "$ck"/step-* 2>/dev/null | tail -1)
  if [ -z "$at" ] || [ -f "$c" ]; then
    echo "FIG: killed and resumed: inconclusive (the run ended or wrote no checkpoint before the kill)"
    echo "RESULT: deterministic $([ $ok -eq 0 ] && echo bit-identical || echo DIFFER); the kill came too late"
    return 1
  fi
  (exact_run --checkpoint-dir "$ck" --checkpoint-every 10 --resume auto --save-weights "$c") >"$work/resume.txt" 2>&1 ||
    { cat "$work/resume.txt"; echo "RESULT: the resumed run failed"; return 1; }
  cat "$work/resume.txt"
  if cmp -s "$a" "$c"; then echo "FIG: killed after ${at##*/} and resumed: bit-identical to the uninterrupted run"
  else echo "FIG: killed after ${at##*/} and resumed: DIFFERS from the uninterrupted run"; ok=1; fi
  echo "RESULT: deterministic runs $(cmp -s "$a" "$b" && echo bit-identical || echo DIFFER); killed after ${at##*/} and resumed $(cmp -s "$a" "$c" && echo bit-identical || echo DIFFERS)"
  return $ok
}

# 4. The GPT bench at one size (no torch.compile column: its compile alone would take the limit).
run_gpt() {
  local size=() rows=(4:4) steps=20 warmup=5
  if [ "$dry" -eq 1 ]; then size=(--small); rows=(2:2); steps=6 warmup=2; fi
  "$python" tests/reference/gpt_gpu_bench.py --vdp-train "$(command -v vdp-train)" --device "$device" "${size[@]}" \
    --rows "${rows[@]}" --steps $steps --warmup $warmup --memory-m "${rows[0]%%:*}" --no-compile | tee "$work/gpt.txt"
  local rc=${PIPESTATUS[0]}
  sed 's/^/FIG: /' "$work/gpt.txt"
  echo "RESULT: $(grep -m1 -o 'GPT [^,]*' "$work/gpt.txt"); $(grep -A1 '^ *m ' "$work/gpt.txt" | tail -1 | awk '{print "vdp/eager " $5}')"
  return $rc
}

step tests "$(limit 120)" run_tests
step window "$(limit 200)" run_window
step exact "$(limit 50)" run_exact
step gpt "$(limit 80)" run_gpt

{
  printf '%s\n' "${results[@]}"
  echo
  printf '%s\n' "${details[@]}"
} >>"$summary"
cat "$summary"
exit $failed
