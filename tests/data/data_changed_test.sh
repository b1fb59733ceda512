#!/usr/bin/env bash
# A data file changed under a running job (launch/README.md, "Exit codes and failures"): x.npy is
# memory-mapped, so truncating it used to kill the run with SIGBUS and rewriting it in place changed
# the samples silently. Now either ends the job with exit 3 and one line naming the file, at W=1 and
# W=2 (the other rank ended with it; a rank that found the change too says so in its own line), and
# no weights file is written.
# Usage: data_changed_test.sh VDP_TRAIN MPIRUN   (VDP_PYTHON: a python with numpy)
set -u
bin=$(readlink -f "$1") mpirun=$2 py=${VDP_PYTHON:-python3}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work" || exit 1
failed=0 passed=0
make_data() {
  "$py" -c "
import numpy as np, sys
rng = np.random.default_rng(int(sys.argv[2]))
np.save(sys.argv[1] + '/x.npy', rng.normal(size=(20000, 256)).astype(np.float32))
np.save(sys.argv[1] + '/y.npy', rng.normal(size=(20000, 1)).astype(np.float32))" "$1" "$2"
}
# case NAME WORLD CHANGE NEEDLE: a long run on d/, CHANGE (a command) once it has trained a step.
case_() {
  local name=$1 world=$2 change=$3 needle=$4
  rm -rf d m.jsonl w.safetensors err; mkdir d; make_data d 1
  local launch=("$bin")
  [ "$world" -gt 1 ] && launch=("$mpirun" -q --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -np "$world" "$bin")
  "${launch[@]}" --dataset npy --data-dir d --model mlp --hidden 256 --global-batch 256 --micro-batch 32 \
    --epochs 1000 --metrics m.jsonl --save-weights w.safetensors --quiet >/dev/null 2>err &
  pid=$!
  for _ in $(seq 600); do grep -q '"event":"step"' m.jsonl 2>/dev/null && break; sleep 0.1; done
  eval "$change"
  local waited=0
  while kill -0 "$pid" 2>/dev/null && [ $waited -lt 300 ]; do sleep 0.1; waited=$((waited + 1)); done
  if kill -0 "$pid" 2>/dev/null; then failed=$((failed + 1)); echo "FAIL: $name: still running 30 s after the change"; return; fi
  wait "$pid"; local rc=$?; pid=
  # One line per rank that found the change (each rank reads the file; two may find it at once);
  # the launcher's own notes (Open MPI aggregating two ranks' aborts) are not vdp's lines.
  local lines; lines=$(grep -c '^vdp-train' err)
  if [ "$rc" -eq 3 ] && [ "$lines" -ge 1 ] && [ "$lines" -le "$world" ] && [ "$(grep -cF -- "$needle" err)" -eq "$lines" ] \
     && [ ! -e w.safetensors ]; then
    passed=$((passed + 1)); echo "ok: $name: exit 3 after $((waited / 10)) s: $(cat err)"
  else
    failed=$((failed + 1)); echo "FAIL: $name: rc=$rc (want 3), $(grep -c . err) stderr lines, want '$needle':"
    sed 's/^/    /' err | head -12
  fi
}
case_ "W=1, x.npy truncated" 1 'truncate -s 1000000 d/x.npy' "d/x.npy' changed while the job was reading it (truncated)"
case_ "W=2, x.npy truncated" 2 'truncate -s 1000000 d/x.npy' "d/x.npy' changed while the job was reading it (truncated)"
case_ "W=1, x.npy rewritten in place" 1 'make_data d 2' "d/x.npy' changed while the job was reading it"
case_ "W=2, y.npy emptied" 2 ': >d/y.npy' "d/y.npy' changed while the job was reading it (truncated)"
echo "data changed under a running job: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
