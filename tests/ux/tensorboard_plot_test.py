#!/usr/bin/env python3
"""TensorBoard files written by vdp read back with Python's tensorboard, value for value against
the metrics file; launch/plot.py turns two metrics files into a PNG."""
import json
import os
import subprocess
import sys
import tempfile

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    vdp_train, plot = sys.argv[1], sys.argv[2]
    fails = 0
    with tempfile.TemporaryDirectory() as work:
        runs = []
        for m in (2, 5):
            tb = os.path.join(work, f"tb{m}")
            metrics = os.path.join(work, f"m{m}.jsonl")
            subprocess.run([vdp_train, "--dataset", "bce-toy", "--model", "seed-convnet", "--samples", "200",
                            "--test-samples", "60", "--global-batch", "20", "--micro-batch", str(m), "--epochs", "3",
                            "--lr", "0.5", "--tensorboard-dir", tb, "--metrics", metrics, "--quiet"], check=True)
            runs.append(metrics)
            ea = EventAccumulator(tb)
            ea.Reload()
            steps = [json.loads(l) for l in open(metrics) if '"event":"step"' in l]
            evals = [json.loads(l) for l in open(metrics) if '"event":"eval"' in l]
            loss = {e.step: e.value for e in ea.Scalars("train/loss")}
            lr = {e.step: e.value for e in ea.Scalars("train/lr")}
            acc = [e.value for e in ea.Scalars("test/accuracy")]
            ok = len(loss) == len(steps) == 30 and len(acc) == len(evals) == 3
            ok = ok and all(abs(loss[r["step"]] - r["loss"]) <= 1e-6 * abs(r["loss"]) for r in steps)
            ok = ok and all(abs(lr[r["step"]] - r["lr"]) <= 1e-6 * r["lr"] for r in steps)
            ok = ok and all(abs(a - e["test_accuracy"]) <= 1e-6 for a, e in zip(acc, evals))
            print(f"tensorboard m={m}: {len(loss)} loss scalars, {len(acc)} accuracy scalars, match: {ok}")
            fails += not ok
        png = os.path.join(work, "plot.png")
        subprocess.run([sys.executable, plot, *runs, "-o", png, "--labels", "m=2", "m=5"], check=True)
        with open(png, "rb") as f:
            head = f.read(8)
        ok = head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(png) > 20000
        print(f"plot.py: {os.path.getsize(png)} bytes, PNG: {ok}")
        fails += not ok
    print(f"{2 - fails if fails <= 2 else 0} passed, {fails} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
