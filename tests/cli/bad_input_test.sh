#!/usr/bin/env bash
# vdp-train on bad input: exit code 2, one line on stderr naming the problem, nothing written.
set -u
bin=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
passes=0

# expect_bad "needle" args...: exit code 2, a single stderr line containing needle, no metrics file.
expect_bad() {
  local needle=$1; shift
  rm -f "$work/m.jsonl"
  "$bin" --metrics "$work/m.jsonl" "$@" >"$work/out" 2>"$work/err"
  local rc=$? lines
  lines=$(wc -l <"$work/err")
  if [ "$rc" -ne 2 ] || [ "$lines" -ne 1 ] || ! grep -qF -- "$needle" "$work/err" || [ -e "$work/m.jsonl" ]; then
    echo "FAIL: vdp-train $* -> rc=$rc, $lines stderr lines, metrics file $( [ -e "$work/m.jsonl" ] && echo written || echo absent):"
    sed 's/^/    /' "$work/err"
    fails=$((fails + 1))
  else
    passes=$((passes + 1))
  fi
}

expect_bad "--micro-batch" --micro-batch 0
expect_bad "--global-batch" --global-batch 0
expect_bad "--model" --model resnet50
expect_bad "--optimizer" --optimizer lamb
expect_bad "--dataset" --dataset imagenet
expect_bad "--lr" --lr -1
expect_bad "unrecognised option" --no-such-option
expect_bad "--data-dir" --data-dir "$work/nowhere"
printf 'global-batch = 64\nthis is not ini\n' >"$work/bad.ini"
expect_bad "bad.ini:2" --config "$work/bad.ini"
expect_bad "--init-weights" --init-weights "$work/missing.safetensors"

# A corrupt data file is found when it is read: still exit 2 and one line naming the file.
fm=/usr/share/datasets/fashion-mnist
if [ -d "$fm" ]; then
  mkdir -p "$work/fm"
  cp "$fm"/*.gz "$work/fm/"
  head -c 100000 "$fm/train-images-idx3-ubyte.gz" >"$work/fm/train-images-idx3-ubyte.gz"
  expect_bad "train-images-idx3-ubyte.gz" --data-dir "$work/fm"
  printf 'not gzip at all' >"$work/fm/train-images-idx3-ubyte.gz"
  expect_bad "train-images-idx3-ubyte.gz" --data-dir "$work/fm"
fi

# A weights file of another model: exit 2, naming the file.
"$bin" --dataset regression --model mlp --hidden 8 --max-steps 1 --save-weights "$work/w.safetensors" >/dev/null 2>&1
expect_bad "w.safetensors" --dataset regression --model mlp --hidden 16 --init-weights "$work/w.safetensors"

# --help and --print-config succeed; the printed config reads back.
"$bin" --help >"$work/help" 2>&1 && grep -q -- "--micro-batch" "$work/help" && passes=$((passes + 1)) ||
  { echo "FAIL: --help"; fails=$((fails + 1)); }
"$bin" --global-batch 48 --micro-batch 6 --print-config >"$work/p.ini" &&
  "$bin" --config "$work/p.ini" --print-config | cmp -s - "$work/p.ini" && passes=$((passes + 1)) ||
  { echo "FAIL: --print-config round trip"; fails=$((fails + 1)); }
# --dry-run prints the plan without training.
"$bin" --dataset regression --model mlp --samples 103 --global-batch 10 --micro-batch 3 --dry-run >"$work/plan" &&
  grep -q "K=4 steps/epoch=11" "$work/plan" && grep -q "last step 10: B_s=3 K_s=1" "$work/plan" &&
  passes=$((passes + 1)) || { echo "FAIL: --dry-run"; cat "$work/plan"; fails=$((fails + 1)); }

# --dry-run --print-ids: every sample of the epoch exactly once; --shuffle=false keeps file order.
expect_bad "--print-ids" --dataset regression --model mlp --print-ids
ids() { "$bin" --dataset regression --model mlp --samples 10 --global-batch 4 --micro-batch 2 --dry-run --print-ids "$@" |
        sed -n 's/^step [0-9]* micro-step [0-9]* rank [0-9]*://p' | tr ' ' '\n' | grep -v '^$' | tr '\n' ' '; }
ordered=$(ids --shuffle=false)
shuffled=$(ids)
if [ "$ordered" = "0 1 2 3 4 5 6 7 8 9 " ] && [ "$(echo "$shuffled" | tr ' ' '\n' | grep -v '^$' | sort -n | tr '\n' ' ')" = "$ordered" ] &&
   [ "$shuffled" != "$ordered" ]; then
  passes=$((passes + 1))
else
  echo "FAIL: --print-ids: ordered '$ordered', shuffled '$shuffled'"; fails=$((fails + 1))
fi
"$bin" --dataset regression --model mlp --samples 10 --global-batch 4 --micro-batch 2 --dry-run --print-ids --shuffle=false |
  grep -qx "step 2 micro-step 0 rank 0: 8 9" && passes=$((passes + 1)) ||
  { echo "FAIL: --print-ids line format"; fails=$((fails + 1)); }

echo "cli: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
