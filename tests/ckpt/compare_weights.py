#!/usr/bin/env python3
"""Compares two safetensors weight files written by vdp: same names, shapes and dtypes, and values
equal (--exact) or within a relative L2 difference (--rtol). Prints the difference; exit 1 if not.
With --checksum SUM L2 it instead checks that Python's safetensors/torch read the file to the
parameter checksum vdp printed (sum and L2 norm of all parameters, float64)."""
import argparse
import sys

import torch
from safetensors.torch import load_file


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("a")
    p.add_argument("b", nargs="?")
    p.add_argument("--exact", action="store_true")
    p.add_argument("--rtol", type=float, default=0.0)
    p.add_argument("--checksum", type=float, nargs=2, metavar=("SUM", "L2"))
    args = p.parse_args()
    a = load_file(args.a)
    if args.checksum:
        params = [t.to(torch.float64) for k, t in sorted(a.items()) if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
        s = sum(t.sum().item() for t in params)
        l2 = sum((t * t).sum().item() for t in params) ** 0.5
        ok = abs(s - args.checksum[0]) <= 1e-9 * max(1.0, abs(s)) and abs(l2 - args.checksum[1]) <= 1e-9 * l2
        print(f"python safetensors: sum {s:.10g} l2 {l2:.10g}; vdp: sum {args.checksum[0]:.10g} l2 {args.checksum[1]:.10g}")
        return 0 if ok else 1
    b = load_file(args.b)
    if sorted(a) != sorted(b):
        print(f"different tensor names: {sorted(set(a) ^ set(b))}")
        return 1
    for k in a:
        if a[k].shape != b[k].shape or a[k].dtype != b[k].dtype:
            print(f"{k}: {a[k].dtype}{tuple(a[k].shape)} vs {b[k].dtype}{tuple(b[k].shape)}")
            return 1
    fa = torch.cat([a[k].to(torch.float64).flatten() for k in sorted(a)])
    fb = torch.cat([b[k].to(torch.float64).flatten() for k in sorted(b)])
    rel = ((fa - fb).norm() / fb.norm()).item()
    identical = all(torch.equal(a[k], b[k]) for k in a)
    print(f"relative difference {rel:.3e}, bit-identical: {identical}")
    if args.exact:
        return 0 if identical else 1
    return 0 if rel <= args.rtol else 1


if __name__ == "__main__":
    sys.exit(main())
