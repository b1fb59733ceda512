#!/usr/bin/env python3
"""Plots vdp metrics (the JSON-lines files of --metrics) as a PNG: loss per step, samples/s,
learning rate and test accuracy, with several runs overlaid for comparison.

  launch/plot.py run1.jsonl [run2.jsonl ...] [-o metrics.png] [--labels a b ...] [--smooth N]

Run it with the Python of vdp's environment (it has matplotlib):
  ~/.cache/vdp/venv-torch2.11.0/bin/python launch/plot.py out/fashion_mnist-*.metrics.jsonl
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    steps, evals, final = [], [], None
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"plot.py: {path}:{n}: not JSON ({e}); give files written by vdp-train --metrics")
            if r.get("event") == "step":
                steps.append(r)
            elif r.get("event") == "eval":
                evals.append(r)
            elif r.get("event") == "final":
                final = r
    if not steps:
        sys.exit(f"plot.py: {path} holds no step records; give a file written by vdp-train --metrics")
    return steps, evals, final


def smooth(values, n):
    if n <= 1:
        return values
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > n:
            acc.pop(0)
        good = [a for a in acc if a is not None]
        out.append(sum(good) / len(good) if good else None)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+")
    p.add_argument("-o", "--output", default="metrics.png")
    p.add_argument("--labels", nargs="+")
    p.add_argument("--smooth", type=int, default=1, help="moving average over N steps for loss and samples/s")
    a = p.parse_args()
    if a.labels and len(a.labels) != len(a.files):
        sys.exit("plot.py: give one label per file")
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    (ax_loss, ax_rate), (ax_lr, ax_acc) = axes
    for i, path in enumerate(a.files):
        steps, evals, final = read(path)
        label = a.labels[i] if a.labels else os.path.basename(path)
        if final:
            label += f" (W={final.get('world_size')}, K={final.get('micro_steps_per_window')})"
        x = [r["step"] for r in steps]
        ax_loss.plot(x, smooth([r.get("loss") for r in steps], a.smooth), label=label)
        ax_rate.plot(x, smooth([r.get("samples_per_s") for r in steps], a.smooth), label=label)
        ax_lr.plot(x, [r.get("lr") for r in steps], label=label)
        pts = [(r["step"], r["test_accuracy"]) for r in evals if r.get("test_accuracy") is not None]
        if pts:
            ax_acc.plot([s for s, _ in pts], [v for _, v in pts], marker="o", label=label)
    for ax, title, ylabel in ((ax_loss, "training loss (exact mean per step)", "loss"),
                              (ax_rate, "throughput", "samples/s"),
                              (ax_lr, "learning rate", "lr"),
                              (ax_acc, "test accuracy (end of epoch)", "accuracy")):
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.output, dpi=100)
    print(f"plot.py: wrote {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
