#!/usr/bin/env python3
"""vdp against PyTorch itself: DistributedDataParallel (gloo) with no_sync for the non-final
micro-steps and losses divided by the real global count, at W=2, on Fashion-MNIST with the
fmnist-cnn model, from the initial weights vdp wrote, on the same sample stream (the plan of
include/vdp/README.md, "The plan" here). Compares final parameters (float32, <= 1e-5 relative).

  ddp_reference.py --vdp-train BIN [--mpirun mpirun]            reference test (exit 1 on mismatch)
  ddp_reference.py --vdp-train BIN --bench [--micro-batches 4 64]  samples/s of both, and the ratio
"""
import argparse
import gzip
import json
import math
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

# vdp's built-in models as PyTorch modules with the same parameter names (launch/vdp_models.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "launch"))
from vdp_models import FmnistCnn  # noqa: E402

M64 = (1 << 64) - 1
FMNIST = "/usr/share/datasets/fashion-mnist"


# --- the plan, as src/plan/plan.cpp defines it ---------------------------------------------
def _splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def _bounded(state, bound):
    state, r = _splitmix(state)
    m = r * bound
    low = m & M64
    if low < bound:
        threshold = ((1 << 64) - bound) % bound
        while low < threshold:
            state, r = _splitmix(state)
            m = r * bound
            low = m & M64
    return state, m >> 64


def epoch_permutation(n, seed, epoch):
    perm = list(range(n))
    state = seed ^ ((0xD1B54A32D192ED03 * (epoch + 1)) & M64)
    state, _ = _splitmix(state)
    for i in range(n - 1, 0, -1):
        state, j = _bounded(state, i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def slot(order, n, b, w, m, step, k, rank):
    bs = min(b, n - step * b)
    k_s = -(-bs // (w * m))
    slots = k_s * w
    base, extra = divmod(bs, slots)
    v = k * w + rank
    begin = v * base + min(v, extra)
    end = begin + base + (1 if v < extra else 0)
    first = step * b
    return order[first + begin:first + end], bs, k_s


# --- data and model, as vdp builds them ------------------------------------------------------
def load_fmnist(root=FMNIST):
    with gzip.open(os.path.join(root, "train-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(root, "train-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    x = torch.from_numpy(images.copy()).to(torch.float64).div_(255.0).sub_(0.2860).div_(0.3530).to(torch.float32)
    return x.contiguous(), torch.from_numpy(labels.astype(np.int64))


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    dtypes = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(body[b:end], dtype=dtypes[e["dtype"]]).copy()).view(e["shape"])
    return out


# --- what the benchmarks share ----------------------------------------------------------------
def device_bench_args(p, a):
    """The GPU benches' shared checks: --warmup within --steps; True when --device cuda finds no GPU
    (the skip is printed, as JSON with --json)."""
    if not 1 <= a.warmup < a.steps:
        p.error("--warmup must be at least 1 and below --steps")
    if a.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device visible"}) if a.json else "no CUDA device visible: skipped")
        return True
    return False


def steady_rate(metrics_path, warmup, key):
    """vdp's steady-state rate from its metrics file: `key` ("samples" or "items") per second over
    the step records after the first `warmup` ones (record s is written when window s has run, so
    the timing starts at the end of window warmup-1)."""
    with open(metrics_path) as f:
        records = [json.loads(line) for line in f]
    steps = [r for r in records if r.get("event") == "step"]
    timed = steps[warmup:]
    final = [r for r in records if r.get("event") == "final"]
    return sum(r[key] for r in timed) / (timed[-1]["time"] - steps[warmup - 1]["time"]), (final[-1] if final else {})


def write_shard(path, tokens):
    """An llm.c token shard: 256 x int32 header (magic 20240520, version 1, count), uint16 tokens."""
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", 20240520, 1, len(tokens), *([0] * 253)))
        f.write(struct.pack(f"<{len(tokens)}H", *tokens))


# --- PyTorch DDP ------------------------------------------------------------------------------
def ddp_worker(rank, world, port, a, init_path, out_path, result_q):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x, y = load_fmnist()
    model = FmnistCnn()
    model.load_state_dict(read_safetensors(init_path))
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
    n = x.shape[0]
    order = epoch_permutation(n, a.seed, 0)
    dist.barrier()
    t0 = time.perf_counter()
    samples = 0
    for step in range(a.steps):
        if step == 1:  # steady state, as vdp's figure: the first step (start-up) is not timed
            dist.barrier()
            t0 = time.perf_counter()
            samples = 0
        _, bs, k_s = slot(order, n, a.global_batch, world, a.micro_batch, step, 0, rank)
        opt.zero_grad(set_to_none=False)
        for k in range(k_s):
            ids, _, _ = slot(order, n, a.global_batch, world, a.micro_batch, step, k, rank)
            idx = torch.tensor(ids, dtype=torch.int64)
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            # DDP averages over ranks: scale the summed loss by W / (global count) so the reduced
            # gradient is the mean over the step's real samples.
            if k < k_s - 1:
                with ddp.no_sync():
                    (F.cross_entropy(ddp(xb), yb, reduction="sum") * (world / bs)).backward()
            else:
                (F.cross_entropy(ddp(xb), yb, reduction="sum") * (world / bs)).backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        samples += bs
    elapsed = time.perf_counter() - t0
    if rank == 0:
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, out_path)
        result_q.put(samples / elapsed)
    dist.destroy_process_group()


def run_ddp(a, init_path, out_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    mp.spawn(ddp_worker, args=(2, port, a, init_path, out_path, q), nprocs=2, join=True)
    return q.get()


def run_vdp(a, work):
    init_path = os.path.join(work, "init.safetensors")
    final_path = os.path.join(work, "vdp_final.safetensors")
    metrics = os.path.join(work, "metrics.jsonl")
    cmd = [a.mpirun, "-np", "2", "--oversubscribe", "--bind-to", "none", "-x", "OMP_NUM_THREADS=1", a.vdp_train,
           "--dataset", "fashion-mnist", "--model", "fmnist-cnn", "--global-batch", str(a.global_batch),
           "--micro-batch", str(a.micro_batch), "--max-steps", str(a.steps), "--optimizer", "sgd", "--lr", str(a.lr),
           "--momentum", str(a.momentum), "--weight-decay", str(a.weight_decay), "--clip-grad-norm", str(a.clip),
           "--seed", str(a.seed), "--eval=false", "--quiet", "--save-init-weights", init_path,
           "--save-weights", final_path, "--metrics", metrics]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL if a.json else None)
    with open(metrics) as f:
        final = [json.loads(line) for line in f if '"final"' in line][-1]
    return init_path, final_path, final["steady_samples_per_s"]


def flat(state):
    return torch.cat([state[k].to(torch.float64).flatten() for k in sorted(state)])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vdp-train", required=True)
    p.add_argument("--mpirun", default="mpirun")
    p.add_argument("--bench", action="store_true", help="time both and print samples/s and the ratio")
    p.add_argument("--micro-batches", type=int, nargs="+", default=[4, 64], help="--bench: micro-batches to time")
    p.add_argument("--json", action="store_true", help="--bench: print the figures as one JSON object")
    p.add_argument("--global-batch", type=int, default=64)
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=3)
    a = p.parse_args()
    if not os.path.isdir(FMNIST):
        print("dataset-fashion-mnist is not installed; run launch/setup.sh")
        return 1

    if a.bench:
        rows = []
        for m in a.micro_batches:
            a.micro_batch = m
            with tempfile.TemporaryDirectory() as work:
                init_path, _, vdp_rate = run_vdp(a, work)
                ddp_rate = run_ddp(a, init_path, os.path.join(work, "ddp.pt"))
            k = -(-a.global_batch // (2 * m))
            rows.append((m, k, vdp_rate, ddp_rate))
        if a.json:
            print(json.dumps({"global_batch": a.global_batch, "steps": a.steps, "world_size": 2,
                              "rows": [{"micro_batch": m, "K": k, "vdp": v, "ddp": d, "ratio": v / d}
                                       for m, k, v, d in rows]}))
            return 0
        print(f"W=2 CPU, fmnist-cnn, global batch {a.global_batch}, {a.steps} steps, 1 thread per rank")
        print(f"{'micro-batch':>11} {'K':>4} {'vdp samples/s':>14} {'DDP samples/s':>14} {'vdp/DDP':>8}")
        for m, k, v, d in rows:
            print(f"{m:>11} {k:>4} {v:>14.1f} {d:>14.1f} {v / d:>8.2f}")
        return 0

    with tempfile.TemporaryDirectory() as work:
        init_path, final_path, _ = run_vdp(a, work)
        ddp_path = os.path.join(work, "ddp.pt")
        run_ddp(a, init_path, ddp_path)
        ours = read_safetensors(final_path)
        theirs = torch.load(ddp_path)
        init = read_safetensors(init_path)
    assert sorted(ours) == sorted(theirs), (sorted(ours), sorted(theirs))
    rel = ((flat(ours) - flat(theirs)).norm() / flat(theirs).norm()).item()
    moved = ((flat(ours) - flat(init)).norm() / flat(init).norm()).item()
    print(f"vdp vs PyTorch DDP (gloo, no_sync), W=2, K={-(-a.global_batch // (2 * a.micro_batch))}, "
          f"{a.steps} steps: relative parameter difference {rel:.3e} (parameters moved {moved:.3e})")
    ok = rel <= 1e-5 and moved > 1e-3
    print(("1 passed, 0 failed" if ok else "0 passed, 1 failed"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
