#!/usr/bin/env python3
"""vdp against PyTorch DDP on a small GPT, CPU, W=2: tokens/s of each at several micro-batches
(vdp-bench section gpt; launch/bench_gpt.sh). Same model (launch/vdp_models.py GPT, from the
initial weights vdp wrote), same sample stream (vdp's plan, include/vdp/README.md, "The plan"), same token-weighted loss
(summed over the step's real tokens / their count), AdamW; DDP (gloo) skips the all-reduce of the
non-final micro-steps with no_sync. Steady state on both sides: the first --warmup steps are
excluded and the same steps are timed (vdp: its per-step metrics records). The final parameters of
the two are compared, so the figures are of the same work.

  gpt_ddp_reference.py --vdp-train BIN [--micro-batches 1 2 8] [--steps 30] [--json]
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "launch"))
sys.path.insert(0, here)
from vdp_models import GPT  # noqa: E402
from ddp_reference import epoch_permutation, read_safetensors, slot, steady_rate, write_shard  # noqa: E402

EOT = 256


def corpus(a):
    """One document of random bytes cut into full-length samples: sample i is tokens[i*T : i*T + T + 1]."""
    n = (a.steps * a.global_batch + 1) * a.context + 1
    g = torch.Generator().manual_seed(7)
    tokens = [EOT] + torch.randint(0, 256, (n - 1,), generator=g).tolist()
    return tokens, (n - 1) // a.context


def ddp_worker(rank, world, port, a, tokens, n, init_path, out_path, result_q):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    t = torch.tensor(tokens, dtype=torch.int64)
    samples = torch.stack([t[i * a.context:i * a.context + a.context + 1] for i in range(n)])
    model = GPT(EOT + 1, a.context, a.layers, a.heads, a.width)
    model.load_state_dict(read_safetensors(init_path))
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    order = epoch_permutation(n, a.seed, 0)
    dist.barrier()
    times = []
    tokens_done = 0
    for step in range(a.steps):
        if step == a.warmup:
            dist.barrier()
            t0 = time.perf_counter()
        _, bs, k_s = slot(order, n, a.global_batch, world, a.micro_batch, step, 0, rank)
        step_tokens = bs * a.context  # every sample is full length
        opt.zero_grad(set_to_none=False)
        for k in range(k_s):
            ids, _, _ = slot(order, n, a.global_batch, world, a.micro_batch, step, k, rank)
            batch = samples.index_select(0, torch.tensor(ids, dtype=torch.int64))
            x, y = batch[:, :-1], batch[:, 1:]
            # DDP averages over ranks: scale the summed loss by W / (the step's tokens).
            loss = F.cross_entropy(ddp(x).flatten(0, 1), y.flatten(), reduction="sum") * (world / step_tokens)
            if k < k_s - 1:
                with ddp.no_sync():
                    loss.backward()
            else:
                loss.backward()
        opt.step()
        if step >= a.warmup:
            tokens_done += step_tokens
    elapsed = time.perf_counter() - t0
    if rank == 0:
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, out_path)
        result_q.put(tokens_done / elapsed)
    dist.destroy_process_group()


def run_vdp(a, work, shards):
    init_path, final_path = os.path.join(work, "init.safetensors"), os.path.join(work, "final.safetensors")
    metrics = os.path.join(work, "metrics.jsonl")
    cmd = [a.mpirun, "-np", "2", "--oversubscribe", "--bind-to", "none", "-x", "OMP_NUM_THREADS=1", a.vdp_train,
           "--dataset", "tokens", "--data-dir", shards, "--model", "gpt", "--layers", str(a.layers),
           "--heads", str(a.heads), "--hidden", str(a.width), "--context", str(a.context),
           "--global-batch", str(a.global_batch), "--micro-batch", str(a.micro_batch), "--max-steps", str(a.steps),
           "--optimizer", "adamw", "--lr", str(a.lr), "--weight-decay", "0.01", "--seed", str(a.seed),
           "--eval=false", "--quiet", "--save-init-weights", init_path, "--save-weights", final_path,
           "--metrics", metrics]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    rate, _ = steady_rate(metrics, a.warmup, "items")
    return init_path, final_path, rate


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vdp-train", required=True)
    p.add_argument("--mpirun", default="mpirun")
    p.add_argument("--micro-batches", type=int, nargs="+", default=[1, 2, 8])
    p.add_argument("--global-batch", type=int, default=16, help="sequences per step")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of the timing, both sides")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    a = p.parse_args()
    if not 1 <= a.warmup < a.steps:
        p.error("--warmup must be at least 1 and below --steps")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        tokens, n = corpus(a)
        shards = os.path.join(work, "shards")
        os.makedirs(shards)
        write_shard(os.path.join(shards, "bench_train_000000.bin"), tokens)
        for m in a.micro_batches:
            a.micro_batch = m
            init_path, final_path, vdp_rate = run_vdp(a, work, shards)
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            ctx = mp.get_context("spawn")
            q = ctx.SimpleQueue()
            ddp_path = os.path.join(work, "ddp.pt")
            mp.spawn(ddp_worker, args=(2, port, a, tokens, n, init_path, ddp_path, q), nprocs=2, join=True)
            ddp_rate = q.get()
            ours, theirs = read_safetensors(final_path), torch.load(ddp_path)
            num = sum((ours[k].double() - theirs[k].double()).norm() ** 2 for k in theirs) ** 0.5
            den = sum(theirs[k].double().norm() ** 2 for k in theirs) ** 0.5
            k_steps = -(-a.global_batch // (2 * m))
            rows.append({"micro_batch": m, "K": k_steps, "vdp": vdp_rate, "ddp": ddp_rate, "ratio": vdp_rate / ddp_rate,
                         "param_rel_diff": float(num / den)})
    params = sum(t.numel() for t in GPT(EOT + 1, a.context, a.layers, a.heads, a.width).parameters())
    result = {"world_size": 2, "global_batch": a.global_batch, "context": a.context, "layers": a.layers,
              "heads": a.heads, "width": a.width, "parameters": params, "steps": a.steps, "warmup": a.warmup,
              "rows": rows}
    if a.json:
        print(json.dumps(result))
        return 0
    print(f"W=2 CPU, GPT {a.layers} layers x {a.width} wide, {a.heads} heads, context {a.context} ({params} parameters), "
          f"{a.global_batch} sequences per step, AdamW, steps {a.warmup}..{a.steps - 1} timed, 1 thread per rank")
    print(f"{'micro-batch':>11} {'K':>4} {'vdp tokens/s':>13} {'DDP tokens/s':>13} {'vdp/DDP':>8} {'param diff':>11}")
    for r in rows:
        print(f"{r['micro_batch']:>11} {r['K']:>4} {r['vdp']:>13.0f} {r['ddp']:>13.0f} {r['ratio']:>8.2f} "
              f"{r['param_rel_diff']:>11.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
