#!/usr/bin/env python3
"""vdp against PyTorch on one GPU, W=1, GPT-2 small's shape (124M parameters, context 1024), bf16
autocast, AdamW: tokens/s in steady state, model FLOP utilisation and peak memory, vdp vs PyTorch
eager and torch.compile running the same window loop (vdp-bench section gpt-gpu). Also vdp's peak
memory at K=16 over K=1 (m fixed). Runs on the CPU with --small, as a smoke test.

Both sides: the same initial weights (vdp's, loaded into launch/vdp_models.py GPT), the same
sequences in the same order (vdp's plan over a shard of random GPT-2 token ids), the token-weighted
loss (summed cross-entropy over the window's tokens / their count), AdamW (PyTorch: fused=True on
CUDA). The first --warmup steps are left out on both sides and the same steps are timed.

  gpt_gpu_bench.py --vdp-train BIN [--device cuda] [--rows 4:4 16:1] [--memory-m 4] [--small]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "launch"))
sys.path.insert(0, here)
from vdp_models import GPT  # noqa: E402
from ddp_reference import device_bench_args, epoch_permutation, read_safetensors, slot, steady_rate, write_shard  # noqa: E402

EOT, VOCAB, SEED, LR = 50256, 50257, 3, 3e-4


def shape(a):  # (layers, heads, width, context)
    return (2, 2, 64, 64) if a.small else (12, 12, 768, 1024)


def corpus(a, n_samples):
    _, _, _, ctx = shape(a)
    g = torch.Generator().manual_seed(7)
    body = torch.randint(0, EOT, (n_samples * ctx,), generator=g).tolist()
    return [EOT] + body, ctx  # one document: sample i = tokens[i*ctx : i*ctx + ctx + 1]


def vdp_run(a, shards, m, k, work):
    layers, heads, width, ctx = shape(a)
    init = os.path.join(work, "init.safetensors")
    metrics = os.path.join(work, "vdp.jsonl")
    if os.path.exists(metrics):
        os.remove(metrics)
    cmd = [a.vdp_train, "--dataset", "tokens", "--data-dir", shards, "--model", "gpt", "--layers", str(layers),
           "--heads", str(heads), "--hidden", str(width), "--context", str(ctx), "--device", a.device,
           "--precision", a.precision, "--optimizer", "adamw", "--lr", str(LR), "--weight-decay", "0.1",
           "--global-batch", str(m * k), "--micro-batch", str(m), "--max-steps", str(a.steps), "--seed", str(SEED),
           "--eval=false", "--quiet", "--save-init-weights", init, "--metrics", metrics]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"vdp-train failed: {r.stderr.strip()}")
    rate, final = steady_rate(metrics, a.warmup, "items")
    return init, rate, final.get("device_peak_bytes", 0)


def pytorch_run(a, samples, m, k, init, compiled):
    device = torch.device(a.device)
    layers, heads, width, ctx = shape(a)
    model = GPT(VOCAB, ctx, layers, heads, width).to(device)
    model.load_state_dict(read_safetensors(init))
    fused = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.1, **fused)
    fwd = torch.compile(model) if compiled else model
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[a.precision]
    n, b = samples.shape[0], m * k
    order = epoch_permutation(n, SEED, 0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0, tokens = None, 0
    for step in range(a.steps):
        if step == a.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        _, bs, k_s = slot(order, n, b, 1, m, step, 0, 0)
        opt.zero_grad(set_to_none=False)
        for j in range(k_s):
            ids, _, _ = slot(order, n, b, 1, m, step, j, 0)
            batch = samples.index_select(0, torch.tensor(ids)).to(device, non_blocking=True)
            x, y = batch[:, :-1], batch[:, 1:]
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = fwd(x)
            (F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum") / (bs * ctx)).backward()
        opt.step()
        if step >= a.warmup:
            tokens += bs * ctx
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return tokens / (time.perf_counter() - t0), peak


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vdp-train", required=True)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--rows", nargs="+", default=["4:4", "16:1"], help="m:K pairs (sequences per micro-batch : K)")
    p.add_argument("--memory-m", type=int, default=4, help="vdp's peak memory at K=16 over K=1 at this m")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="the device's dense bf16 peak (H100/H200 SXM: 989)")
    p.add_argument("--small", action="store_true", help="a 2-layer, 64-wide GPT (CPU smoke test)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if device_bench_args(p, a):
        return 0
    layers, heads, width, ctx = shape(a)
    rows = [tuple(int(v) for v in r.split(":")) for r in a.rows]
    most = max([m * k for m, k in rows] + [a.memory_m * 16])
    tokens, _ = corpus(a, most * a.steps)
    samples = torch.tensor(tokens[:most * a.steps * ctx + 1]).unfold(0, ctx + 1, ctx).contiguous()
    if a.device == "cuda":
        samples = samples.pin_memory()
    params = sum(t.numel() for t in GPT(VOCAB, ctx, layers, heads, width).parameters())
    flops_per_token = 6 * params + 12 * layers * width * ctx  # PaLM's estimate, attention included
    out = {"device": torch.cuda.get_device_name() if a.device == "cuda" else "cpu", "parameters": params,
           "context": ctx, "precision": a.precision, "steps": a.steps, "warmup": a.warmup, "rows": []}
    with tempfile.TemporaryDirectory() as work:
        shards = os.path.join(work, "shards")
        os.makedirs(shards)
        write_shard(os.path.join(shards, "bench_train_000000.bin"), tokens)
        for m, k in rows:
            init, vdp_rate, vdp_peak = vdp_run(a, shards, m, k, work)
            eager, eager_peak = pytorch_run(a, samples, m, k, init, compiled=False)
            row = {"m": m, "K": k, "vdp": vdp_rate, "eager": eager, "vdp_vs_eager": vdp_rate / eager,
                   "vdp_peak_mb": vdp_peak / 1e6, "eager_peak_mb": eager_peak / 1e6}
            if not a.no_compile:
                # torch.compile needs Triton, a C compiler and Python's headers on the host: a host
                # without them loses this column, said in the table, not the section.
                try:
                    comp, _ = pytorch_run(a, samples, m, k, init, compiled=True)
                    row.update({"compiled": comp, "vdp_vs_compiled": vdp_rate / comp})
                except Exception as e:  # noqa: BLE001 - any compiler failure
                    row["compiled_error"] = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                    print(f"torch.compile failed at m={m} K={k}: {row['compiled_error']}", file=sys.stderr)
            if a.device == "cuda":
                row["vdp_mfu"] = vdp_rate * flops_per_token / (a.peak_tflops * 1e12)
                row["eager_mfu"] = eager * flops_per_token / (a.peak_tflops * 1e12)
            out["rows"].append(row)
        _, _, peak1 = vdp_run(a, shards, a.memory_m, 1, work)
        _, _, peak16 = vdp_run(a, shards, a.memory_m, 16, work)
        out["memory"] = {"m": a.memory_m, "K1_peak_mb": peak1 / 1e6, "K16_peak_mb": peak16 / 1e6,
                         "K16_over_K1": peak16 / peak1 if peak1 else None}
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"{out['device']}: GPT {layers}x{width}, {heads} heads, context {ctx} ({params} parameters), "
          f"{a.precision}, AdamW, W=1, steps {a.warmup}..{a.steps - 1} timed")
    print(f"{'m':>3} {'K':>3} {'vdp tok/s':>10} {'eager':>10} {'vdp/eager':>9} {'compiled':>10} {'vdp/comp':>8} "
          f"{'vdp MFU':>8} {'vdp MB':>8} {'eager MB':>9}")
    for r in out["rows"]:
        print(f"{r['m']:>3} {r['K']:>3} {r['vdp']:>10.0f} {r['eager']:>10.0f} {r['vdp_vs_eager']:>9.2f} "
              f"{r.get('compiled', float('nan')):>10.0f} {r.get('vdp_vs_compiled', float('nan')):>8.2f} "
              f"{r.get('vdp_mfu', float('nan')):>8.3f} {r['vdp_peak_mb']:>8.1f} {r['eager_peak_mb']:>9.1f}")
    for r in out["rows"]:
        if "compiled_error" in r:
            print(f"  m={r['m']} K={r['K']}: torch.compile failed: {r['compiled_error']}")
    mem = out["memory"]
    print(f"vdp peak memory at m={mem['m']}: K=1 {mem['K1_peak_mb']:.1f} MB, K=16 {mem['K16_peak_mb']:.1f} MB, "
          f"ratio {mem['K16_over_K1']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
