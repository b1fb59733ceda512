#!/usr/bin/env python3
"""vdp against PyTorch on one device, W=1, the Fashion-MNIST CNN, SGD with momentum, the window loop
of accumulation (vdp-bench section gpu; runs on the CPU too, for a smoke test): samples/s in steady
state (the first --warmup steps left out on both sides, the same steps timed), the ratio, and peak
device memory (CUDA caching-allocator statistics) of each, at each (B, m) and precision.

PyTorch eager runs the same model (launch/vdp_models.py FmnistCnn, from the initial weights vdp
wrote), the same sample order (vdp's plan), the same window loop (micro-batches gathered from pinned
host memory and copied non_blocking, summed cross-entropy, gradients scaled by 1/B, one optimizer
step per window) and torch.optim.SGD (foreach). On CUDA it is also run "graphed by hand", the best a
PyTorch user can do: data resident on the GPU, the micro-step and the optimizer step captured with
torch.cuda.graph and replayed (full micro-batches only: B divisible by m).

  window_bench.py --vdp-train BIN [--device cuda] [--data-dir D] [--rows 128:4 128:32 ...] [--precisions fp32 bf16]
"""
import argparse
import copy
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
from vdp_models import FmnistCnn  # noqa: E402
from ddp_reference import FMNIST, device_bench_args, epoch_permutation, load_fmnist, read_safetensors, slot, steady_rate  # noqa: E402

LR, MOMENTUM, SEED = 0.05, 0.9, 3


class VdpFailed(RuntimeError):
    """A vdp-train run of the bench failed: its last stderr line."""


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_vdp(a, b, m, precision, work, extra=()):
    init = os.path.join(work, "init.safetensors")
    metrics = os.path.join(work, "vdp.jsonl")
    if os.path.exists(metrics):
        os.remove(metrics)
    cmd = [a.vdp_train, "--dataset", "fashion-mnist", "--data-dir", a.data_dir, "--model", "fmnist-cnn", "--device", a.device,
           "--global-batch", str(b), "--micro-batch", str(m), "--max-steps", str(a.steps), "--optimizer", "sgd",
           "--lr", str(LR), "--momentum", str(MOMENTUM), "--seed", str(SEED), "--precision", precision,
           "--eval=false", "--quiet", "--save-init-weights", init, "--metrics", metrics, *extra]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise VdpFailed(f"vdp-train {' '.join(extra) or 'eager'} failed (exit {r.returncode}): "
                        + (r.stderr.strip().splitlines() or ["no message"])[-1])
    rate, final = steady_rate(metrics, a.warmup, "samples")
    return init, rate, final.get("device_peak_bytes", 0), final.get("gpu_busy")


def pytorch_eager(a, b, m, precision, init, x_host, y_host, order):
    device = torch.device(a.device)
    model = FmnistCnn().to(device)
    model.load_state_dict(read_safetensors(init))
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    n = x_host.shape[0]
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = None
    for step in range(a.steps):
        if step == a.warmup:
            sync(device)
            t0 = time.perf_counter()
        _, bs, k_s = slot(order, n, b, 1, m, step, 0, 0)
        opt.zero_grad(set_to_none=False)
        for k in range(k_s):
            ids, _, _ = slot(order, n, b, 1, m, step, k, 0)
            idx = torch.tensor(ids, dtype=torch.int64)
            xb = x_host.index_select(0, idx).to(device, non_blocking=True)
            yb = y_host.index_select(0, idx).to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                out = model(xb)
            (F.cross_entropy(out.float(), yb, reduction="sum") / bs).backward()
        opt.step()
    sync(device)
    timed_samples = sum(slot(order, n, b, 1, m, s, 0, 0)[1] for s in range(a.warmup, a.steps))
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return timed_samples / (time.perf_counter() - t0), peak


def pytorch_graphed(a, b, m, precision, init, x_host, y_host, order):
    """Data on the GPU; one micro-step and the optimizer step captured with torch.cuda.graph."""
    device = torch.device(a.device)
    model = FmnistCnn().to(device)
    model.load_state_dict(read_safetensors(init))
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, capturable=True) \
        if "capturable" in torch.optim.SGD.__init__.__code__.co_varnames else \
        torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    x_dev, y_dev = x_host.to(device), y_host.to(device)
    n = x_host.shape[0]
    k = b // m
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    static_x = torch.zeros((m,) + tuple(x_dev.shape[1:]), device=device)
    static_y = torch.zeros(m, dtype=torch.int64, device=device)
    static_idx = torch.zeros(m, dtype=torch.int64, device=device)

    def micro():  # autocast's weight cache cannot live across graph replays
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None, cache_enabled=False):
            out = model(static_x)
        (F.cross_entropy(out.float(), static_y, reduction="sum") / b).backward()

    # Warm-up on a side stream (as CUDA graphs require), then capture.
    torch.cuda.reset_peak_memory_stats(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=False)
            micro()
            opt.step()
    torch.cuda.current_stream(device).wait_stream(side)
    model.load_state_dict(read_safetensors(init))
    opt.zero_grad(set_to_none=False)
    micro_graph, step_graph = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
    with torch.cuda.graph(micro_graph):
        micro()
    with torch.cuda.graph(step_graph, pool=micro_graph.pool()):
        opt.step()
        opt.zero_grad(set_to_none=False)
    opt.zero_grad(set_to_none=False)
    t0 = None
    for step in range(a.steps):
        if step == a.warmup:
            sync(device)
            t0 = time.perf_counter()
        ids_all = torch.tensor(order[step * b:(step + 1) * b], dtype=torch.int64).to(device, non_blocking=True)
        for j in range(k):
            static_idx.copy_(ids_all[j * m:(j + 1) * m])
            torch.index_select(x_dev, 0, static_idx, out=static_x)
            torch.index_select(y_dev, 0, static_idx, out=static_y)
            micro_graph.replay()
        step_graph.replay()
    sync(device)
    return (a.steps - a.warmup) * b / (time.perf_counter() - t0), torch.cuda.max_memory_allocated(device)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vdp-train", required=True)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--data-dir", default=FMNIST, help="Fashion-MNIST's .gz files")
    p.add_argument("--rows", nargs="+", default=["128:4", "128:32", "128:128", "1024:64", "1024:256", "1024:1024"],
                   help="B:m pairs")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    p.add_argument("--steps", type=int, default=80, help="steps per run, at most one epoch (N // B) at each B")
    p.add_argument("--warmup", type=int, default=20, help="first steps left out of the timing, both sides")
    p.add_argument("--no-graphed", action="store_true", help="skip PyTorch graphed by hand")
    p.add_argument("--memory-m", type=int, default=64, help="vdp's peak memory at K=16 over K=1 at this m")
    p.add_argument("--busy-m", type=int, default=0, help="measure the GPU-busy fraction only at this m (0: every row)")
    p.add_argument("--no-resident", action="store_true", help="skip the --data-on-device eager column")
    p.add_argument("--keep-going", action="store_true",
                   help="a failed vdp run fails its column (said in the table), not the whole bench")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if device_bench_args(p, a):
        return 0
    x, y = load_fmnist(a.data_dir)
    if a.device == "cuda":
        x, y = x.pin_memory(), y.pin_memory()
    order = epoch_permutation(x.shape[0], SEED, 0)
    rows, memory = [], []

    def within_epoch(b):
        # Both sides walk one epoch's order: at most N // B full steps (B=1024: 58 of Fashion-MNIST's
        # 60000 samples), the same steps for both.
        r = copy.copy(a)
        r.steps = min(a.steps, x.shape[0] // b)
        if r.steps <= r.warmup:
            p.error(f"B={b}: one epoch holds {x.shape[0] // b} steps, not more than --warmup {a.warmup}; lower --warmup")
        return r

    with tempfile.TemporaryDirectory() as work:
        for spec in a.rows:
            b, m = (int(v) for v in spec.split(":"))
            a_b = within_epoch(b)
            for precision in a.precisions:
                row = {"B": b, "m": m, "K": -(-b // m), "steps": a_b.steps, "precision": precision}
                rows.append(row)

                def column(name, f):  # one vdp column; with --keep-going a failure is noted in the row
                    try:
                        return f()
                    except VdpFailed as e:
                        if not a.keep_going:
                            raise SystemExit(str(e))
                        row[name + "_error"] = str(e)
                        print(f"B={b} m={m} {precision}: {name} failed: {e}", file=sys.stderr)
                        return None

                got = column("vdp", lambda: run_vdp(a_b, b, m, precision, work))
                if got is None:
                    continue
                init, vdp_rate, vdp_peak, _ = got
                eager_rate, eager_peak = pytorch_eager(a_b, b, m, precision, init, x, y, order)
                row.update({"vdp": vdp_rate, "pytorch_eager": eager_rate, "ratio": vdp_rate / eager_rate,
                            "vdp_peak_mb": vdp_peak / 1e6, "eager_peak_mb": eager_peak / 1e6})
                if a.device == "cuda":
                    # The training set resident on the GPU, and (in a run of its own: the profiler
                    # slows the host) the GPU-busy fraction over the timed steps.
                    if not a.no_resident:
                        got = column("vdp_resident", lambda: run_vdp(a_b, b, m, precision, work, ["--data-on-device"]))
                        if got:
                            row.update({"vdp_resident": got[1], "resident_ratio": got[1] / eager_rate})
                    if a.busy_m in (0, m):
                        got = column("vdp_gpu_busy", lambda: run_vdp(a_b, b, m, precision, work,
                                                                      ["--gpu-busy-steps", str(a_b.steps - a.warmup)]))
                        if got:
                            row["vdp_gpu_busy"] = got[3]
                    # CUDA graphs with the data on the GPU: what PyTorch graphed by hand has too.
                    got = column("vdp_graphs", lambda: run_vdp(a_b, b, m, precision, work,
                                                                ["--cuda-graphs", "--data-on-device"]))
                    if got:
                        row.update({"vdp_graphs": got[1], "graphs_vs_eager": got[1] / eager_rate})
                if a.device == "cuda" and not a.no_graphed and b % m == 0:
                    try:
                        g_rate, g_peak = pytorch_graphed(a_b, b, m, precision, init, x, y, order)
                    except RuntimeError as e:  # this torch cannot capture it: say so, keep the other columns
                        row["graphed_error"] = str(e).splitlines()[0]
                        print(f"PyTorch graphed by hand failed at B={b} m={m} {precision}: {row['graphed_error']}",
                              file=sys.stderr)
                        continue
                    row.update({"pytorch_graphed": g_rate, "vdp_vs_graphed": vdp_rate / g_rate,
                                "graphed_peak_mb": g_peak / 1e6})
                    if "vdp_graphs" in row:
                        row["vdp_graphs_vs_graphed"] = row["vdp_graphs"] / g_rate
        # Memory does not grow with K: vdp's peak at K=16 over K=1, the same m (on the CPU the
        # metrics record holds no device peak: ratio None).
        mm = a.memory_m
        for precision in a.precisions:
            try:
                _, _, peak1, _ = run_vdp(within_epoch(mm), mm, mm, precision, work)
                _, _, peak16, _ = run_vdp(within_epoch(16 * mm), 16 * mm, mm, precision, work)
            except VdpFailed as e:
                if not a.keep_going:
                    raise SystemExit(str(e))
                memory.append({"m": mm, "precision": precision, "error": str(e)})
                continue
            memory.append({"m": mm, "precision": precision, "K1_peak_mb": peak1 / 1e6, "K16_peak_mb": peak16 / 1e6,
                           "K16_over_K1": peak16 / peak1 if peak1 else None})
    name = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    result = {"device": name, "steps": a.steps, "warmup": a.warmup, "rows": rows, "memory": memory}
    if a.json:
        print(json.dumps(result))
        return 0
    print(f"{name}: fmnist-cnn, W=1, SGD momentum, steps {a.warmup}..min({a.steps}, 60000 // B) - 1 timed")
    print(f"{'B':>5} {'m':>5} {'K':>3} {'prec':>5} {'vdp/s':>10} {'eager/s':>10} {'ratio':>6} {'graphed/s':>10} "
          f"{'vdp/gr':>6} {'vdp MB':>8} {'eager MB':>9} {'resid/s':>10} {'ratio':>6} {'busy':>5} {'graphs/s':>10} "
          f"{'/eager':>6} {'/gr':>5}")
    for r in rows:
        if "vdp" not in r:
            print(f"{r['B']:>5} {r['m']:>5} {r['K']:>3} {r['precision']:>5} vdp failed: {r['vdp_error']}")
            continue
        print(f"{r['B']:>5} {r['m']:>5} {r['K']:>3} {r['precision']:>5} {r['vdp']:>10.0f} {r['pytorch_eager']:>10.0f} "
              f"{r['ratio']:>6.2f} {r.get('pytorch_graphed', float('nan')):>10.0f} "
              f"{r.get('vdp_vs_graphed', float('nan')):>6.2f} {r['vdp_peak_mb']:>8.1f} {r['eager_peak_mb']:>9.1f} "
              f"{r.get('vdp_resident', float('nan')):>10.0f} {r.get('resident_ratio', float('nan')):>6.2f} "
              f"{r.get('vdp_gpu_busy') or float('nan'):>5.2f} {r.get('vdp_graphs', float('nan')):>10.0f} "
              f"{r.get('graphs_vs_eager', float('nan')):>6.2f} {r.get('vdp_graphs_vs_graphed', float('nan')):>5.2f}")
    for r in rows:
        for key in ("vdp_resident_error", "vdp_gpu_busy_error", "vdp_graphs_error", "graphed_error"):
            if key in r:
                print(f"  B={r['B']} m={r['m']} {r['precision']}: {key[:-6]} failed: {r[key]}")
    for mem in memory:
        if "error" in mem:
            print(f"vdp peak memory at m={mem['m']}, {mem['precision']}: failed: {mem['error']}")
            continue
        ratio = mem["K16_over_K1"]
        print(f"vdp peak memory at m={mem['m']}, {mem['precision']}: K=1 {mem['K1_peak_mb']:.1f} MB, "
              f"K=16 {mem['K16_peak_mb']:.1f} MB, K=16/K=1 " + (f"{ratio:.3f}" if ratio else "n/a (no device peak)"))
    failed = any(k.endswith("_error") for r in rows for k in r) or any("error" in mem for mem in memory)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
