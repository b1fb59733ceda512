#!/usr/bin/env bash
# The bad-input corpus (launch/README.md, "Exit codes and failures"): every case below is a distinct bad input to vdp-train
# (an option, an INI file, a data file, a weights file, a checkpoint, an output path, ranks started
# alike except for one thing). Each must end with its exit code, exactly one line on stderr that
# names the problem, and no file written: every case runs in an empty folder that must stay as it
# was, with its outputs pointed into it.
#   bad_input_corpus_test.sh VDP_TRAIN MPIRUN
set -u
bin=$(readlink -f "$1") mpirun=$2 py=${VDP_PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tried=0 clean=0 crashes=0 hangs=0 wrong=0
fm=/usr/share/datasets/fashion-mnist
base=(--dataset regression --model mlp --samples 64 --global-batch 16 --micro-batch 4 --max-steps 2 --quiet)
# merge ARGS...: sets $merged to the base options that ARGS does not set, then ARGS.
merge() {
  merged=()
  local i=0 a
  while [ $i -lt ${#base[@]} ]; do
    local opt=${base[$i]} n=2 seen=0
    [ "$opt" = --quiet ] && n=1
    for a in "$@"; do [ "$a" = "$opt" ] || [ "${a%%=*}" = "$opt" ] && seen=1; done
    [ $seen = 0 ] && merged+=("${base[@]:$i:$n}")
    i=$((i + n))
  done
  merged+=("$@")
}

# What the case folder holds: every name, and each file's size and modification time (a folder's
# own time may change when a refused run takes and gives back a lock file in it).
snapshot() {
  (cd "$case" && find . | sort && find . -type f | sort | xargs -r stat -c '%n %s %Y' 2>/dev/null)
}
# check CODE NEEDLE LAUNCH... : runs LAUNCH (a command) in a fresh folder $case, with the metrics
# and weights outputs pointed into it.
check() {
  local code=$1 needle=$2; shift 2
  tried=$((tried + 1))
  local before after rc lines
  before=$(snapshot)
  (cd "$case" && timeout 60 "$@" >"$work/out" 2>"$work/err")
  rc=$?
  after=$(snapshot)
  lines=$(grep -c . "$work/err")
  if [ "$rc" -eq 124 ]; then
    hangs=$((hangs + 1)); echo "HANG: $*"
  elif [ "$rc" -ge 128 ] || grep -qE "Segmentation|Aborted|terminate called|backtrace|Exception raised from" "$work/err"; then
    crashes=$((crashes + 1)); echo "CRASH (rc=$rc): $*"; sed 's/^/    /' "$work/err" | head -5
  elif [ "$rc" -ne "$code" ] || [ "$lines" -ne 1 ] || ! grep -qF -- "$needle" "$work/err" || [ "$before" != "$after" ]; then
    wrong=$((wrong + 1))
    echo "WRONG: $* -> rc=$rc (want $code), $lines stderr lines, folder $([ "$before" = "$after" ] && echo unchanged || echo CHANGED), want '$needle':"
    sed 's/^/    /' "$work/err" | head -5
    [ "$before" = "$after" ] || diff <(echo "$before") <(echo "$after") | head -5 | sed 's/^/    /'
  else
    clean=$((clean + 1))
  fi
}
fresh() { case=$work/case$tried; mkdir -p "$case"; }
# bad OPTION VALUE NEEDLE: one bad option value on the command line (replacing the base's value).
bad() { merge --metrics m.jsonl --save-weights w.safetensors "--$1=$2"; fresh; check 2 "$3" "$bin" "${merged[@]}"; }
# bad_args NEEDLE ARGS...: free-form arguments (after the base).
bad_args() { local n=$1; shift; merge --metrics m.jsonl "$@"; fresh; check 2 "$n" "$bin" "${merged[@]}"; }

# --- 1. numeric options: not a number, out of range, overflow, NaN, Inf ------------------------
for opt in global-batch micro-batch epochs samples hidden lr-step-size scaler-growth-interval; do
  for v in 0 -3 abc 1.5 9223372036854775807 99999999999999999999999 "" 1e3x; do bad $opt "$v" "$opt"; done
done
for v in -1 abc 1000001 2.5; do bad gpu-busy-steps "$v" gpu-busy-steps; done
for v in -1 abc 2.5 1000000001 99999999999999999999999; do bad chunk "$v" chunk; done
for opt in max-steps test-samples warmup-steps checkpoint-every keep-last log-every; do
  for v in -1 abc 9223372036854775807 99999999999999999999999 2.5; do bad $opt "$v" "$opt"; done
done
for opt in lr weight-decay clip-grad-norm min-lr scaler-init; do
  for v in -1 nan inf abc 1e400; do bad $opt "$v" "$opt"; done
done
for v in -0.1 1 1.5 nan abc; do bad momentum "$v" momentum; done
for v in -0.1 1 nan abc; do bad beta1 "$v" beta1; bad beta2 "$v" beta2; done
for v in 0 -1 1 nan abc; do bad eps "$v" eps; done
for v in 0 1.5 -1 nan abc; do bad lr-gamma "$v" lr-gamma; done
for v in 1 0.5 inf nan abc; do bad scaler-growth-factor "$v" scaler-growth-factor; done
for v in 0 1 1.5 nan abc; do bad scaler-backoff-factor "$v" scaler-backoff-factor; done
for v in 0 -1 1e15 1e-9 nan inf abc; do bad bucket-mb "$v" bucket-mb; done
for v in 0 -5 1e9 nan abc; do bad timeout "$v" timeout; done
for v in abc -1.5 99999999999999999999999 1e3; do bad seed "$v" seed; done

# --- 2. enum and boolean options ----------------------------------------------------------------
for opt in dataset model norm bn-momentum-unit dtype optimizer lr-schedule device backend precision grad-scaler nonfinite; do
  bad $opt bogus "$opt"; bad $opt "" "$opt"
done
for opt in overlap eval drop-last nesterov quiet cuda-graphs data-on-device; do bad $opt perhaps "$opt"; done

# --- 3. options that exclude each other or need another ------------------------------------------
bad_args "nesterov" --nesterov
bad_args "momentum" --optimizer adam --momentum 0.9
bad_args "precision" --precision bf16 --dtype float64
bad_args "min-lr" --lr 0.01 --min-lr 0.1
bad_args "checkpoint-every" --checkpoint-every 5
bad_args "resume" --resume auto
bad_args "--model" --model fmnist-cnn
bad_args "--model" --model seq-gru
bad_args "--model" --dataset sequence --model mlp
bad_args "--model" --dataset bce-toy --model mlp
bad_args "--norm" --norm batch
bad_args "--chunk" --dataset fashion-mnist --model fmnist-cnn --norm batch --micro-batch 8 --chunk 2
bad_args "--chunk" --dataset fashion-mnist --model fmnist-cnn --norm syncbatch --micro-batch 8 --chunk 4
for v in 0 -1 1.5 12X nan "" G 1e400; do bad memory-budget "$v" memory-budget; done
bad_args "--chunk" --micro-batch auto --chunk 4
bad_args "--micro-batch" --dataset fashion-mnist --model fmnist-cnn --norm syncbatch --micro-batch auto
bad_args "--recompute" --dataset sequence --model seq-gru --recompute
bad_args "--recompute" --dataset fashion-mnist --model fmnist-cnn --norm batch --recompute
bad_args "--recompute" --dataset fashion-mnist --model resnet18 --norm syncbatch --recompute
# A budget one sample exceeds: exit 3, the budget named, nothing written.
merge --metrics m.jsonl --hidden 4096 --micro-batch auto --memory-budget 2000000; fresh
check 3 "one sample does not fit" "$bin" "${merged[@]}"
bad_args "--backend" --backend nccl
bad_args "--device" --device cuda
bad_args "--device cuda" --cuda-graphs
# With --device auto on a machine without a GPU: the CPU build says "needs a GPU and a CUDA build", the
# CUDA build "needs a GPU, but this run is on cpu".
bad_args "--cuda-graphs needs a GPU" --cuda-graphs --device auto
bad_args "bn-momentum-unit" --cuda-graphs --device cuda --bn-momentum-unit window --model seed-convnet --dataset bce-toy
bad_args "--device cuda" --gpu-busy-steps 5
bad_args "--device cuda" --gpu-busy-steps 5 --device auto
bad_args "cannot be specified more than once" --backend self --backend mpi
bad_args "cannot be specified more than once" --lr 0.1 --lr 0.2
bad_args "unrecognised option" --no-such-option
bad_args "unrecognised option" -x
bad_args "--lr" --lr
bad_args "--resume" --resume nowhere --checkpoint-dir ck
bad_args "exclude each other" --resume auto --checkpoint-dir . --init-weights x.safetensors

# --- 4. configuration files ---------------------------------------------------------------------
ini() { fresh; printf "$1" >"$case/c.ini"; check 2 "$2" "$bin" --config c.ini --metrics m.jsonl; }
ini 'global-batch = 64\nthis is not ini\n' "c.ini:2"
ini '[batch\nglobal-batch = 64\n' "c.ini:1"
ini 'no-such-key = 1\n' "c.ini:1"
ini '[optim]\nglobal-batch = 64\n' "c.ini:2"
ini 'lr = 0.1\nlr = 0.2\n' "c.ini:2"
ini '[optim]\nbatch.global-batch = 64\n' "c.ini:2"
ini 'lr = -1\n' "--lr"
ini 'lr = fast\n' "lr"
ini '= 3\n' "c.ini:1"
ini 'config = other.ini\n' "c.ini:1"
ini 'model = resnet\n' "--model"
ini 'dataset = regression\nmodel = mlp\nsamples = 0\n' "--samples"
ini '\377\376\154\000\162\000\075\000\061\000\n\000' "UTF-16"
ini 'lr = 0.1\n\154\000\162\000\075\000\061\000' "c.ini:2: a NUL byte"
fresh; check 2 "--config" "$bin" --config nowhere.ini --metrics m.jsonl
fresh; mkdir "$case/d.ini"; check 2 "not a regular file" "$bin" --config d.ini --metrics m.jsonl
fresh; check 2 "not a regular file" "$bin" --config /dev/zero --metrics m.jsonl
fresh; mkfifo "$case/f.ini"; check 2 "not a regular file" "$bin" --config f.ini --metrics m.jsonl
fresh; head -c 5000000 /dev/zero | tr '\0' '#' >"$case/big.ini"; check 2 "at most" "$bin" --config big.ini --metrics m.jsonl
fresh; head -c 3000 /dev/urandom >"$case/bin.ini"; check 2 "bin.ini" "$bin" --config bin.ini --metrics m.jsonl

# --- 5. data files ------------------------------------------------------------------------------
fmcase() {  # NEEDLE, then a command that damages the copy in $case/fm
  local needle=$1; shift
  fresh; mkdir "$case/fm"; cp "$fm"/*.gz "$case/fm/"; eval "$*"
  check 2 "$needle" "$bin" --model mlp --data-dir fm --max-steps 1 --metrics m.jsonl --quiet
}
if [ -d "$fm" ]; then
  fmcase "train-images" 'head -c 100000 "$fm/train-images-idx3-ubyte.gz" >"$case/fm/train-images-idx3-ubyte.gz"'
  fmcase "train-images" 'printf "not gzip" >"$case/fm/train-images-idx3-ubyte.gz"'
  fmcase "train-labels" 'printf "" >"$case/fm/train-labels-idx1-ubyte.gz"'
  fmcase "t10k-labels" 'rm "$case/fm/t10k-labels-idx1-ubyte.gz"'
  fmcase "train-labels" 'printf "\x00\x00\x08\x01\x00\x00\x00\x05abcde" | gzip >"$case/fm/train-labels-idx1-ubyte.gz"'
  fmcase "train-images" 'printf "\x00\x00\x09\x03\x00\x00\x00\x01\x00\x00\x00\x1c\x00\x00\x00\x1c" | gzip >"$case/fm/train-images-idx3-ubyte.gz"'
  fmcase "t10k-images" 'head -c 16 /dev/zero | gzip >"$case/fm/t10k-images-idx3-ubyte.gz"'
  fmcase "t10k-labels" 'cp "$fm/train-labels-idx1-ubyte.gz" "$case/fm/t10k-labels-idx1-ubyte.gz"'
  fresh; check 2 "--data-dir" "$bin" --model mlp --data-dir "$case/none" --metrics m.jsonl
  fresh; touch "$case/file"; check 2 "--data-dir" "$bin" --model mlp --data-dir file --metrics m.jsonl
fi

# --- 5b. NumPy arrays and token shards: the whole data checked before the first window ----------
# (values anywhere in the files, shapes that would broadcast, splits that do not match, models whose
# output has no gradient). From a file: torch.jit.script reads the classes' source.
ndir=$work/npy; mkdir -p "$ndir"
cat >"$ndir/make.py" <<'PY'
import os, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(2)
n = 48
x = rng.normal(size=(n, 6)).astype(np.float32)
cls = rng.integers(0, 3, n).astype(np.int64)
def case(name, **arrays):
    os.makedirs(f"{d}/{name}", exist_ok=True)
    for k, v in arrays.items():
        np.save(f"{d}/{name}/{k}.npy", v)
def with_(a, idx, v):
    a = a.copy(); a[idx] = v; return a
tok = rng.integers(0, 40, size=(n, 9)).astype(np.int64)
case("nan_x", x=with_(x, (37, 1), np.nan), y=cls)
case("inf_y", x=x, y=with_(rng.normal(size=(n, 2)).astype(np.float32), (11, 0), np.inf))
case("class_neg", x=x, y=with_(cls, 20, -1))
case("class_huge", x=x, y=with_(cls, 5, 10**9))
case("test_class", x=x, y=cls, test_x=x[:6], test_y=with_(cls[:6], 3, 7))
case("test_shape", x=x, y=cls, test_x=rng.normal(size=(6, 5)).astype(np.float32), test_y=cls[:6])
case("test_dtype", x=x, y=cls, test_x=x[:6], test_y=rng.normal(size=6).astype(np.float32))
case("test_no_y", x=x, y=cls, test_x=x[:6])
case("rows", x=x, y=cls[:40])
case("empty", x=x[:0], y=cls[:0])
case("mask_two", x=tok[:, :8], y=tok[:, 1:], mask=with_(np.ones((n, 8), np.uint8), (9, 2), 2))
case("mask_none", x=tok[:, :8], y=tok[:, 1:], mask=np.zeros((n, 8), np.uint8))
case("mask_shape", x=tok[:, :8], y=tok[:, 1:], mask=np.ones((n, 7), np.uint8))
case("token_neg", x=with_(tok[:, :8], (30, 4), -3), y=tok[:, 1:])
case("y_other_rank", x=x, y=rng.normal(size=(n, 2, 2)).astype(np.float32))
case("int_x_mlp", x=rng.integers(0, 100, size=(n, 4)).astype(np.int32), y=rng.normal(size=(n, 1)).astype(np.float32))
case("obj", x=x, y=cls)
np.save(f"{d}/obj/y.npy", np.array([{"a": 1}] * n, dtype=object), allow_pickle=True)
case("fortran", x=np.asfortranarray(rng.normal(size=(n, 6)).astype(np.float32)), y=cls)
case("bigendian", x=x.astype(">f4"), y=cls)
case("complex", x=x.astype(np.complex64), y=cls)
os.makedirs(f"{d}/folder_x", exist_ok=True); np.save(f"{d}/folder_x/y.npy", cls); os.makedirs(f"{d}/folder_x/x.npy", exist_ok=True)
os.makedirs(f"{d}/zero_x", exist_ok=True); np.save(f"{d}/zero_x/y.npy", cls)
if not os.path.lexists(f"{d}/zero_x/x.npy"): os.symlink("/dev/zero", f"{d}/zero_x/x.npy")
# Token shards (llm.c format): a header only; an odd byte; val tokens beyond the train vocabulary.
def shard(path, tokens, extra=b""):
    h = np.zeros(256, np.int32); h[:3] = (20240520, 1, len(tokens))
    with open(path, "wb") as f:
        f.write(h.tobytes()); f.write(np.asarray(tokens, np.uint16).tobytes()); f.write(extra)
t = rng.integers(0, 50, 3000)
os.makedirs(f"{d}/tok_empty", exist_ok=True); shard(f"{d}/tok_empty/train_000.bin", []); shard(f"{d}/tok_empty/val_000.bin", t[:500])
os.makedirs(f"{d}/tok_odd", exist_ok=True); shard(f"{d}/tok_odd/train_000.bin", t, b"\x01"); shard(f"{d}/tok_odd/val_000.bin", t[:500])
os.makedirs(f"{d}/tok_count", exist_ok=True); shard(f"{d}/tok_count/train_000.bin", t); 
h = np.zeros(256, np.int32); h[:3] = (20240520, 1, 5000)
open(f"{d}/tok_count/val_000.bin", "wb").write(h.tobytes() + np.asarray(t[:500], np.uint16).tobytes())
# A TorchScript module that would broadcast: returns [m] for [m,1] targets; and one returning a scalar.
import torch
class Flat(torch.nn.Module):
    def __init__(self):
        super().__init__(); self.fc = torch.nn.Linear(6, 1)
    def forward(self, x):
        return self.fc(x).squeeze(1)
class Scalar(Flat):
    def forward(self, x):
        return self.fc(x).sum()
class Argmax(Flat):
    def forward(self, x):
        return (self.fc(x) > 0).to(x.dtype)
case("reg", x=x, y=rng.normal(size=(n, 1)).astype(np.float32))
case("reg2", x=x, y=rng.normal(size=(n, 2)).astype(np.float32))
for c in (Flat, Scalar, Argmax):
    torch.jit.script(c()).save(f"{d}/{c.__name__.lower()}.pt")
PY
"$py" "$ndir/make.py" "$ndir" >/dev/null 2>&1 || echo "cannot make the array cases with $py"
npy() {  # FOLDER NEEDLE [ARGS...]: --dataset npy on $ndir/FOLDER (--model mlp unless ARGS are given)
  local d=$1 needle=$2; shift 2
  [ $# -eq 0 ] && set -- --model mlp
  fresh; check 2 "$needle" "$bin" --dataset npy --data-dir "$ndir/$d" --global-batch 16 --micro-batch 4 --max-steps 1 \
    --quiet --metrics m.jsonl "$@"
}
npy nan_x "x.npy' holds NaN or Inf in sample 37"
npy inf_y "y.npy' holds NaN or Inf in sample 11"
npy class_neg "y.npy' holds a negative class id"
npy class_huge "holds class id 1000000000"
npy test_class "test_y.npy' holds class 7 in sample 3"
npy test_shape "the test split must look like the training split"
npy test_dtype "the test split must look like the training split"
npy test_no_y "test_y.npy"
npy rows "the files do not belong together"
npy empty "holds no samples"
npy y_other_rank "they must be equal"
npy int_x_mlp "mlp takes floating-point inputs"
npy obj "unsupported dtype '|O'"
npy fortran "Fortran order"
npy bigendian "big-endian"
npy complex "unsupported dtype '<c8'"
npy folder_x "x.npy as a folder"
npy zero_x "x.npy as a device"
gpt=(--model gpt --context 8 --hidden 16)
npy mask_two "holds a value other than 0 and 1 in sample 9" "${gpt[@]}"
npy mask_none "counts no target at all" "${gpt[@]}"
npy mask_shape "the mask marks the real targets" "${gpt[@]}"
npy token_neg "holds a negative token id in sample 30" "${gpt[@]}"
npy reg "they must be equal" --model torchscript --model-file "$ndir/flat.pt"
npy reg2 "they must be equal" --model torchscript --model-file "$ndir/flat.pt"
npy reg "one row per sample" --model torchscript --model-file "$ndir/scalar.pt"
npy reg "has no gradient with respect to the parameters" --model torchscript --model-file "$ndir/argmax.pt"
tok() { fresh; check 2 "$2" "$bin" --dataset tokens --model gpt --context 16 --hidden 16 --global-batch 8 --micro-batch 4 \
  --max-steps 1 --quiet --metrics m.jsonl --data-dir "$ndir/$1"; }
tok tok_empty "hold no tokens"
tok tok_odd "an odd number"
tok tok_count "says it holds 5000 tokens but has room for 500"

# --- 6. weights files ---------------------------------------------------------------------------
wdir=$work/weights; mkdir -p "$wdir"
"$bin" "${base[@]}" --hidden 8 --save-weights "$wdir/w8.safetensors" >/dev/null 2>&1
"$bin" "${base[@]}" --hidden 8 --dtype float64 --save-weights "$wdir/w8d.safetensors" >/dev/null 2>&1
"$py" - "$wdir" <<'PY' 2>/dev/null
import json, struct, sys
d = sys.argv[1]
raw = open(d + "/w8.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n]); data = bytearray(raw[8 + n:])
name = sorted(k for k in h if k != "__metadata__")[0]
a, b = h[name]["data_offsets"]
nan = bytearray(data); nan[a:a + 4] = struct.pack("<f", float("nan"))
open(d + "/nan.safetensors", "wb").write(raw[:8 + n] + bytes(nan))
inf = bytearray(data); inf[a:a + 4] = struct.pack("<f", float("inf"))
open(d + "/inf.safetensors", "wb").write(raw[:8 + n] + bytes(inf))
open(d + "/trunc.safetensors", "wb").write(raw[:len(raw) - 10])
open(d + "/hdr.safetensors", "wb").write(struct.pack("<Q", 10**12) + raw[8:])
open(d + "/json.safetensors", "wb").write(struct.pack("<Q", 5) + b"{bad}")
h2 = dict(h); h2["extra"] = h[name]; s = json.dumps(h2).encode()
open(d + "/extra.safetensors", "wb").write(struct.pack("<Q", len(s)) + s + bytes(data))
PY
winit() { fresh; check 2 "$2" "$bin" "${base[@]}" --hidden 8 --init-weights "$1" --metrics m.jsonl; }
winit "$wdir/missing.safetensors" "--init-weights"
winit "$wdir" "--init-weights"
winit "$wdir/nan.safetensors" "NaN or Inf"
winit "$wdir/inf.safetensors" "NaN or Inf"
winit "$wdir/trunc.safetensors" "trunc.safetensors"
winit "$wdir/hdr.safetensors" "hdr.safetensors"
winit "$wdir/json.safetensors" "json.safetensors"
winit "$wdir/extra.safetensors" "extra"
winit "$wdir/w8d.safetensors" "--dtype"
winit /dev/null "--init-weights"
fresh; check 2 "shape" "$bin" "${base[@]}" --hidden 16 --init-weights "$wdir/w8.safetensors" --metrics m.jsonl

# --- 7. checkpoints -----------------------------------------------------------------------------
cdir=$work/ck
"$bin" "${base[@]}" --hidden 8 --checkpoint-dir "$cdir" >/dev/null 2>&1
ck=$cdir/step-0000000002
ckcase() {  # NEEDLE, ARGS for vdp-train, then a command damaging the copy $case/c/step-0000000002
  local needle=$1 args=$2; shift 2
  fresh; mkdir "$case/c"; cp -r "$ck" "$case/c/"; eval "$*"
  # shellcheck disable=SC2086
  merge --hidden 8 --max-steps 4 $args --metrics m.jsonl
  check 2 "$needle" "$bin" "${merged[@]}"
}
ckcase "CRC" "--resume c/step-0000000002" 'printf "\x55" | dd of="$case/c/step-0000000002/weights.safetensors" bs=1 seek=200 conv=notrunc 2>/dev/null'
ckcase "bytes" "--resume c/step-0000000002" 'truncate -s 100 "$case/c/step-0000000002/optimizer.safetensors"'
ckcase "manifest" "--resume c/step-0000000002" 'rm "$case/c/step-0000000002/manifest.json"'
ckcase "JSON" "--resume c/step-0000000002" 'printf "{" >"$case/c/step-0000000002/manifest.json"'
ckcase "state.json" "--resume c/step-0000000002" 'rm "$case/c/step-0000000002/state.json"'
ckcase "step" "--resume c/step-0000000007" 'mv "$case/c/step-0000000002" "$case/c/step-0000000007"'
ckcase "--global-batch" "--resume c/step-0000000002 --global-batch 8" ':'
ckcase "--seed" "--resume c/step-0000000002 --seed 9" ':'
ckcase "--optimizer" "--resume c/step-0000000002 --optimizer adam" ':'
ckcase "sgd with momentum" "--resume c/step-0000000002 --momentum 0.9" ':'
# state.json or the generator state damaged consistently (the manifest's sizes and CRCs made again):
# the checks behind the CRC must still refuse them.
remanifest() {
  "$py" - "$1" <<'PY'
import json, sys, zlib
d = sys.argv[1]
m = json.load(open(d + "/manifest.json"))
for f in m["files"]:
    b = open(d + "/" + f, "rb").read()
    m["files"][f] = {"bytes": len(b), "crc32": zlib.crc32(b)}
json.dump(m, open(d + "/manifest.json", "w"), indent=2)
PY
}
edit_state() {  # a python expression on s, the parsed state.json, then the manifest made again
  "$py" -c "import json,sys; p=sys.argv[1]+'/state.json'; s=json.load(open(p)); $1; json.dump(s, open(p,'w'))" "$2"
  remanifest "$2"
}
drop_rng() {
  "$py" - "$1" <<'PY'
import json, struct, sys
p = sys.argv[1] + "/trainer.safetensors"
raw = open(p, "rb").read(); n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n]); data = raw[8 + n:]
out, body = {}, b""
for k, v in h.items():
    if k in ("__metadata__", "rng.cpu"): continue
    a, b = v["data_offsets"]; out[k] = dict(v, data_offsets=[len(body), len(body) + b - a]); body += data[a:b]
s = json.dumps(out).encode(); s += b" " * ((8 - len(s) % 8) % 8)
open(p, "wb").write(struct.pack("<Q", len(s)) + s + body)
PY
  remanifest "$1"
}
ckcase "impossible counters" "--resume c/step-0000000002" 'edit_state "s[\"optimizer_steps\"]=-3" "$case/c/step-0000000002"'
ckcase "impossible counters" "--resume c/step-0000000002" 'edit_state "s[\"skipped_steps\"]=9" "$case/c/step-0000000002"'
ckcase "rng.cpu" "--resume c/step-0000000002" 'drop_rng "$case/c/step-0000000002"'
ckcase "data" "--resume c/step-0000000002" 'edit_state "s[\"data_digest\"]=\"0123456789abcdef\"" "$case/c/step-0000000002"'
ckcase "step-N" "--resume c" ':'
ckcase "--resume" "--resume c/nothing" ':'
ckcase "already holds checkpoints" "--checkpoint-dir c" ':'

fresh; mkdir "$case/c"; cp -r "$ck" "$case/c/"
merge --hidden 4 --max-steps 4 --resume c/step-0000000002 --metrics m.jsonl
check 2 "shape" "$bin" "${merged[@]}"

# --- 8. output paths ----------------------------------------------------------------------------
out() { fresh; eval "$2"; check 2 "$1" "$bin" "${base[@]}" "${@:3}"; }
out "--metrics" 'mkdir "$case/d"' --metrics d
out "--save-weights" 'mkdir "$case/d"' --save-weights d
out "--save-weights" ':' --save-weights /tmp
out "--save-init-weights" 'mkdir "$case/d"' --save-init-weights d
out "also the path of" ':' --metrics x --save-weights x
out "also the path of" ':' --metrics a.jsonl --save-init-weights ./a.jsonl
out "also the path of" ':' --save-weights w --save-init-weights w
out "--tensorboard-dir" 'touch "$case/f"' --tensorboard-dir f
out "--checkpoint-dir" 'touch "$case/f"' --checkpoint-dir f
out "--metrics" 'touch "$case/f"' --metrics f/m.jsonl
out "--save-weights" 'touch "$case/f"' --save-weights f/sub/w.safetensors
out "--metrics" ':' --metrics /proc/vdp/m.jsonl
out "--checkpoint-dir" ':' --checkpoint-dir /proc/vdp-ck
out "--tensorboard-dir" ':' --tensorboard-dir /proc/tb
fresh; check 3 "/dev/full" "$bin" "${base[@]}" --metrics /dev/full

# --- 9. ranks started differently (an MPMD launch: one rank gets one thing else) ----------------
mpi=("$mpirun" -q --oversubscribe --bind-to none -x OMP_NUM_THREADS=1)
for diff in "--hidden 32" "--dtype float64" "--max-steps 3" "--global-batch 32" "--lr 0.5" "--seed 3" \
            "--optimizer adam" "--samples 65" "--micro-batch 8" "--timeout 30" "--clip-grad-norm 1" \
            "--lr-schedule cosine"; do
  fresh
  # shellcheck disable=SC2086
  merge $diff
  check 2 "ranks disagree" "${mpi[@]}" -np 1 "$bin" "${base[@]}" --metrics m.jsonl : -np 1 "$bin" "${merged[@]}"
done
fresh
check 2 "[rank 1]" "${mpi[@]}" -np 1 "$bin" "${base[@]}" --metrics m.jsonl : -np 1 "$bin" "${base[@]}" --lr -1
# Other bytes of the same shapes on one rank (a row the digest of shapes and sampled rows would miss,
# a token shard with one byte changed, a TorchScript module with the same parameters and other code).
adir=$work/agree; mkdir -p "$adir"
# (From a file: torch.jit.script reads the classes' source, which a script on stdin does not have.)
cat >"$adir/make.py" <<'PY'
import os, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(1)
x = rng.normal(size=(64, 4)).astype(np.float32); y = rng.normal(size=(64, 1)).astype(np.float32)
for name, row in (("a", None), ("b", 1), ("c", 40)):
    os.makedirs(f"{d}/{name}", exist_ok=True)
    xx = x.copy()
    if row is not None: xx[row, 2] += 1.0
    np.save(f"{d}/{name}/x.npy", xx); np.save(f"{d}/{name}/y.npy", y)
os.makedirs(f"{d}/ta", exist_ok=True); os.makedirs(f"{d}/tb", exist_ok=True)
tok = rng.integers(0, 50, size=4096).astype(np.uint16)
for name in ("ta", "tb"):
    t = tok.copy()
    if name == "tb": t[3000] = (t[3000] + 1) % 50
    for split, part in (("train", t[:3072]), ("val", t[3072:])):
        header = np.zeros(256, np.int32); header[:3] = (20240520, 1, len(part))
        with open(f"{d}/{name}/{split}_000.bin", "wb") as f:
            f.write(header.tobytes()); f.write(part.tobytes())
import torch
class A(torch.nn.Module):
    def __init__(self):
        super().__init__(); self.fc = torch.nn.Linear(4, 1)
    def forward(self, x):
        return self.fc(torch.relu(x))
class B(A):
    def forward(self, x):
        return self.fc(torch.tanh(x))
torch.manual_seed(0); torch.jit.script(A()).save(f"{d}/a/m.pt")
torch.manual_seed(0); torch.jit.script(B()).save(f"{d}/b/m.pt")
PY
"$py" "$adir/make.py" "$adir" >/dev/null 2>&1 || echo "cannot make the agreement cases' files with $py"
npyargs=(--dataset npy --global-batch 16 --micro-batch 4 --max-steps 2 --quiet)
for other in b c; do
  fresh
  check 2 "the checksum of x.npy" "${mpi[@]}" -np 1 "$bin" "${npyargs[@]}" --model mlp --data-dir "$adir/a" --metrics m.jsonl : \
    -np 1 "$bin" "${npyargs[@]}" --model mlp --data-dir "$adir/$other"
done
tokargs=(--dataset tokens --model gpt --context 16 --hidden 16 --global-batch 8 --micro-batch 4 --max-steps 1 --quiet)
fresh
check 2 "the checksum of train_000.bin" "${mpi[@]}" -np 1 "$bin" "${tokargs[@]}" --data-dir "$adir/ta" --metrics m.jsonl : \
  -np 1 "$bin" "${tokargs[@]}" --data-dir "$adir/tb"
# The same --model-file path on every rank (each in its own working folder), other code on rank 1.
fresh; cp "$adir/a/m.pt" "$case/m.pt"
check 2 "the checksum of m.pt" "${mpi[@]}" -np 1 "$bin" "${npyargs[@]}" --data-dir "$adir/a" --model torchscript \
  --model-file m.pt --metrics m.jsonl : -np 1 -wdir "$adir/b" "$bin" "${npyargs[@]}" --data-dir "$adir/a" \
  --model torchscript --model-file m.pt
# A rank that never starts MPI (here a program that is not vdp): MPI's start-up is bounded by --timeout.
fresh
check 4 "MPI's start-up did not complete within --timeout 3" "${mpi[@]}" -np 1 "$bin" "${base[@]}" --timeout 3 : -np 1 sleep 30
# A rank alone asked for an action instead of training: refused on every rank, not an exit 1.
for action in --help --print-config --dry-run; do
  fresh
  check 2 "ranks disagree" "${mpi[@]}" -np 1 "$bin" "${base[@]}" --metrics m.jsonl : -np 1 "$bin" "${base[@]}" $action
done

echo "bad-input corpus: $tried inputs tried, $clean clean, $crashes crashes, $hangs hangs, $wrong wrong"
echo "$clean passed, $((tried - clean)) failed"
[ "$clean" -eq "$tried" ] && [ "$tried" -ge 200 ]
