#!/usr/bin/env bash
# launch/gpu-kit.sh and launch/gpu-check.sh on the CPU (CTest gpu.check_dry_run): what can be checked
# without a GPU. Bad command lines are one line and exit 2; a kit packed into a folder of its own
# holds vdp-train, the GPU test program, the data and the commit; the dry run runs the four steps
# on the CPU and writes one summary (the GPU tests skip there; the others pass: the two
# --deterministic runs and the killed-and-resumed run bit-identical); a step over its limit is
# stopped with everything it started, reported TIMEOUT, and the check goes on and fails.
#   gpu_check_test.sh REPO BUILD PYTHON
set -uo pipefail
repo=$1 build=$2 python=$3
[ -x "$python" ] || { echo "SKIP: no Python with torch (VDP_PYTHON)"; exit 77; }
work=$(mktemp -d /tmp/vdp-gpu-check-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
fails=0
check() {  # check DESCRIPTION CONDITION...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fails=$((fails + 1)); fi
}
one_line_exit2() {  # one_line_exit2 NEEDLE CMD...: exit 2, one stderr line containing NEEDLE
  local needle=$1; shift
  "$@" >"$work/o" 2>"$work/e"; local rc=$?
  [ $rc -eq 2 ] && [ "$(wc -l <"$work/e")" -eq 1 ] && grep -q -- "$needle" "$work/e" ||
    { echo "  exit $rc, stderr: $(cat "$work/e")"; return 1; }
}
check "gpu-kit.sh: an unknown option" one_line_exit2 "unknown option '--bogus'" bash "$repo/launch/gpu-kit.sh" --bogus
mkdir -p "$work/precious"; echo keep >"$work/precious/file"
check "gpu-kit.sh: a folder that is not a kit is not replaced" \
  one_line_exit2 "is not a kit" bash "$repo/launch/gpu-kit.sh" "$build" --kit "$work/precious"
check "  ... and is left as it was" test "$(cat "$work/precious/file")" = keep
check "gpu-check.sh: no kit" one_line_exit2 "run launch/gpu-kit.sh" bash "$repo/launch/gpu-check.sh" --kit "$work/none" --dry-run
check "gpu-check.sh: an unknown step" one_line_exit2 "unknown step 'bench'" bash "$repo/launch/gpu-check.sh" --only tests,bench
check "gpu-check.sh: --scale 0" one_line_exit2 "positive number" bash "$repo/launch/gpu-check.sh" --scale 0

kit=$work/kit
bash "$repo/launch/gpu-kit.sh" "$build" --data --kit "$kit" >"$work/pack.txt" 2>&1
check "the kit holds vdp-train, vdp_gpu_tests, the data, the commit" \
  test -x "$kit/bin/vdp-train" -a -f "$kit/data/train-images-idx3-ubyte.gz" -a -s "$kit/COMMIT"
if grep -q "VDP_WITH_CUDA:BOOL=ON" "$build/CMakeCache.txt"; then
  check "  ... vdp_gpu_tests (a CUDA build)" test -x "$kit/bin/vdp_gpu_tests"
fi

export VDP_PYTHON=$python
t0=$(date +%s)
# The limits are sized for a GPU; on a CPU shared with other tests (CI runs several at once) the dry
# run's steps take several times longer: ten times the limits here.
( . "$kit/env.sh" && bash "$repo/launch/gpu-check.sh" --dry-run --scale 10 --out "$work/out" ) >"$work/run.txt" 2>&1
rc=$?
secs=$(( $(date +%s) - t0 ))
sed 's/^/  | /' "$work/out/summary.txt" 2>/dev/null | head -40
s=$work/out/summary.txt
check "the dry run wrote a summary" test -s "$s"
if grep -q "VDP_WITH_CUDA:BOOL=ON" "$build/CMakeCache.txt"; then
  check "  tests: every GPU test skipped on the CPU (SKIP)" grep -qE '^\[SKIP\] +tests .* 0 failed' "$s"
  check "the dry run exits 0 (nothing failed)" test $rc -eq 0
fi
check "  window: PASS, one row against PyTorch eager" grep -qE '^\[PASS\] +window' "$s"
check "  the limits scaled by 10" grep -q 'limits (s): tests 1200, window 2000, exact 500, gpt 800' "$s"
check "  exact: PASS, bit-identical twice" grep -qE '^\[PASS\] +exact .*deterministic runs bit-identical; killed after step-[0-9]+ and resumed bit-identical' "$s"
check "  gpt: PASS" grep -qE '^\[PASS\] +gpt' "$s"
check "  each step's log" test -s "$work/out/logs/window.log" -a -s "$work/out/logs/exact.log" -a -s "$work/out/logs/gpt.log"
echo "dry run: $secs s"

# A step over its limit: stopped with what it started, TIMEOUT, the next step still runs, exit 1.
( . "$kit/env.sh" && bash "$repo/launch/gpu-check.sh" --dry-run --out "$work/out2" --only exact,gpt --scale 0.02 ) \
  >"$work/run2.txt" 2>&1
rc=$?
check "a step over its limit: TIMEOUT" grep -qE '^\[TIMEOUT\] +exact .*stopped at its limit of 1 s' "$work/out2/summary.txt"
check "  the next step still ran" grep -qE '^\[(PASS|FAIL|TIMEOUT)\] +gpt' "$work/out2/summary.txt"
check "  the check failed (exit 1)" test $rc -eq 1
sleep 1
left_running() { for p in /proc/[0-9]*; do readlink "$p/exe" 2>/dev/null; done | grep -c "^$kit/bin/"; }
check "  nothing it started is left running" test "$(left_running)" -eq 0
echo "$fails failed"
[ $fails -eq 0 ]
