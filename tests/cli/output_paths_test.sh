#!/usr/bin/env bash
# The output-path policy (launch/README.md, "Outputs") and the signals of a run's first moments:
# outputs never replace what is not a regular file (private device nodes made with mknod when root,
# FIFOs, symbolic links), a FIFO nobody reads is refused at once, a link's target is written and the
# link stays, a closed stdout (`vdp-train | head`) does not kill the run, and a stop signal in the
# first moment it can be caught ends the run with exit 5 after its first window; missing output folders
# are made, and an output folder removed during the run ends it with exit 3.
# Usage: output_paths_test.sh VDP_TRAIN
set -u
bin=$(readlink -f "$1")
work=$(mktemp -d)
reader=
cleanup() { [ -n "$reader" ] && kill "$reader" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work" || exit 1
base=(--dataset regression --model mlp --samples 64 --global-batch 16 --micro-batch 4 --max-steps 2 --quiet)
failed=0 passed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
# run CODE NEEDLE ARGS...: vdp-train with the base options; exit code and (for errors) one stderr line.
run() {
  local code=$1 needle=$2; shift 2
  timeout 60 "$bin" "${base[@]}" "$@" >out 2>err
  local rc=$?
  if [ "$rc" -ne "$code" ]; then bad "rc=$rc (want $code): $*"; sed 's/^/    /' err | head -3; return 1; fi
  if [ -n "$needle" ] && { [ "$(grep -c . err)" -ne 1 ] || ! grep -qF -- "$needle" err; }; then
    bad "want one line with '$needle': $*"; sed 's/^/    /' err | head -3; return 1
  fi
  ok
}

# 1. Private device nodes (root only: mknod): a file output is refused and the node stays a device;
#    the metrics file streams into a character device.
if [ "$(id -u)" -eq 0 ] && mknod null c 1 3 2>/dev/null; then
  chmod 666 null
  run 2 "is a character device" --save-weights null; [ -c null ] && ok || bad "the device node was replaced"
  run 2 "is a character device" --save-init-weights null; [ -c null ] && ok || bad "the device node was replaced"
  ln -s null to_null
  run 2 "is a character device" --save-weights to_null
  [ -L to_null ] && [ -c null ] && ok || bad "the link or the node was replaced"
  run 0 "" --metrics null; [ -c null ] && ok || bad "--metrics replaced the device node"
  run 0 "" --metrics to_null; [ -L to_null ] && [ -c null ] && ok || bad "--metrics replaced the link or the node"
else
  echo "note: not root or no mknod here: device-node cases skipped"
fi

# 2. FIFOs: nobody reading is refused at once (never a hang); with a reader the metrics stream in.
mkfifo fifo
run 2 "no process reads" --metrics fifo
run 2 "is a FIFO" --save-weights fifo
[ -p fifo ] && ok || bad "the FIFO was replaced"
timeout 60 cat fifo >from_fifo &
reader=$!
run 0 "" --metrics fifo
wait "$reader"; reader=
grep -q '"event":"final"' from_fifo && ok || bad "the metrics did not come through the FIFO"
[ -p fifo ] && ok || bad "the FIFO was replaced"

# 3. Symbolic links: the target is written, the link stays; a link to nothing is refused.
echo old >target.safetensors
ln -s target.safetensors wlink
run 0 "" --save-weights wlink
[ -L wlink ] && [ "$(readlink wlink)" = target.safetensors ] && ok || bad "the link was replaced"
[ "$(stat -c %s target.safetensors)" -gt 100 ] && ok || bad "the link's target was not written"
mkdir sub && echo '{}' >sub/m.jsonl && ln -s sub/m.jsonl mlink
run 0 "" --metrics mlink
[ -L mlink ] && grep -q '"event":"final"' sub/m.jsonl && ok || bad "metrics through a link"
ln -s nowhere/w.safetensors dangling
run 2 "symbolic link to nothing" --save-weights dangling
[ ! -e nowhere ] && ok || bad "a folder was made for a dangling link"

# 4. A trailing slash is a folder's name: refused, nothing made.
run 2 "ends with '/'" --metrics m.jsonl/
[ ! -e m.jsonl ] && ok || bad "--metrics m.jsonl/ made something"

# 5. A closed stdout: the run goes on to its end (exit 0) and writes its record.
"$bin" --dataset regression --model mlp --samples 64 --global-batch 16 --micro-batch 4 --max-steps 40 \
  --log-every 1 --metrics piped.jsonl 2>perr | head -c 1 >/dev/null
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] && grep -q '"event":"final"' piped.jsonl && ok || { bad "closed stdout: rc=$rc"; head -3 perr; }

# 6. A stop signal as soon as it can be caught (before MPI, data or model): exit 5 after the first
#    window, with a checkpoint.
"$bin" --dataset regression --model mlp --samples 64 --global-batch 16 --micro-batch 4 --epochs 100000 \
  --quiet --checkpoint-dir ck >sout 2>serr &
pid=$!
# As soon as the process catches SIGTERM (bit 15 of SigCgt in /proc/PID/status): from main() on.
# Before that its libraries are still being loaded, where no program can handle a signal.
for _ in $(seq 1 500); do
  mask=$(awk '/^SigCgt:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
  [ -n "$mask" ] && [ $(( (16#$mask >> 14) & 1 )) -eq 1 ] && break
  sleep 0.01
done
kill -TERM "$pid"
wait "$pid"
rc=$?
[ "$rc" -eq 5 ] && ls ck | grep -q '^step-' && ok || { bad "SIGTERM at start: rc=$rc (want 5 and a checkpoint)"; head -3 serr; }

# 7. Output folders made when missing (--save-weights into a folder that does not exist yet), and an
#    output folder removed during the run: exit 3 with a true line when the next record is lost, not
#    an exit 2 blaming the input after the whole run.
run 0 "" --save-weights new/sub/w.safetensors --save-init-weights new/init/w0.safetensors
[ -f new/sub/w.safetensors ] && [ -f new/init/w0.safetensors ] && ok || bad "--save-weights did not make its folder"
for output in "--metrics gone/m.jsonl" "--tensorboard-dir gone/tb"; do
  rm -rf gone
  # shellcheck disable=SC2086
  "$bin" --dataset regression --model mlp --samples 4096 --global-batch 64 --micro-batch 16 --epochs 100000 \
    --quiet $output >sout 2>serr &
  pid=$!
  for _ in $(seq 1 300); do [ -n "$(find gone -type f -size +0 2>/dev/null)" ] && break; sleep 0.05; done
  rm -rf gone
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid"
  rc=$?
  [ "$rc" -eq 3 ] && [ "$(grep -c . serr)" -eq 1 ] && grep -q "was removed during the run" serr && ok ||
    { bad "$output removed during the run: rc=$rc (want 3, one line)"; head -3 serr; }
done

echo "output paths: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
