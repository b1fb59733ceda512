"""--dataset npy end to end, against PyTorch itself: arrays of several shapes and dtypes written by
numpy.save train in vdp-train with the loss --loss auto picks from the targets (or the one asked
for), and one step over the whole batch, split into uneven micro-batches over 1 or 2 ranks, equals
PyTorch's full-batch step on the same arrays with the twin model (launch/vdp_models.py) in float64
(1e-13 relative). Bad arrays are one line and exit 2.
Usage: npy_dataset_test.py VDP_TRAIN LAUNCH_DIR MPIRUN
"""
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vdp_testlib import Checks, run  # noqa: E402

checks = Checks()
check = checks.check

vdp_train, launch, mpirun = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, launch)
from vdp_models import Mlp, FmnistCnn, SeqGru  # noqa: E402

N = 24
rng = np.random.default_rng(5)



def vdp(args, world=1):
    return run(vdp_train, args, world, mpirun)


def t64(a):
    return torch.from_numpy(np.asarray(a)).to(torch.float64)


CASES = {
    # name: (arrays, model, extra options, twin factory, loss of PyTorch on (output, batch))
    "mse/mlp: x float32 [n,4,5], y float64 [n,3]": (
        {"x": rng.normal(size=(N, 4, 5)).astype(np.float32), "y": rng.normal(size=(N, 3))},
        "mlp", ["--hidden", "8"], lambda: Mlp(20, 8, 3),
        lambda out, d: F.mse_loss(out, t64(d["y"]))),
    "cross-entropy/fmnist-cnn: x uint8 [n,1,28,28], y int32": (
        {"x": rng.integers(0, 256, size=(N, 1, 28, 28), dtype=np.uint8), "y": rng.integers(0, 10, N).astype(np.int32)},
        "fmnist-cnn", [], lambda: FmnistCnn("none"),
        lambda out, d: F.cross_entropy(out, torch.from_numpy(d["y"]).long())),
    "bce/mlp: x float16 [n,10], y bool [n,4] (--loss bce, on logits)": (
        {"x": rng.normal(size=(N, 10)).astype(np.float16), "y": rng.integers(0, 2, size=(N, 4)).astype(bool)},
        "mlp", ["--hidden", "8", "--loss", "bce"], lambda: Mlp(10, 8, 4),
        lambda out, d: F.binary_cross_entropy_with_logits(out, t64(d["y"]))),
    "token-cross-entropy/seq-gru: x int64 [n,7], y int16 [n,7], mask uint8": (
        {"x": rng.integers(1, 16, size=(N, 7)), "y": rng.integers(0, 16, size=(N, 7)).astype(np.int16),
         "mask": (rng.random((N, 7)) < 0.6).astype(np.uint8)},
        "seq-gru", ["--hidden", "8"], lambda: SeqGru(8),
        lambda out, d: (F.cross_entropy(out.flatten(0, 1), torch.from_numpy(d["y"]).long().flatten(), reduction="none")
                        * t64(d["mask"]).flatten()).sum() / t64(d["mask"]).sum()),
}

with tempfile.TemporaryDirectory() as work:
    for name, (arrays, model, extra, twin_factory, torch_loss) in CASES.items():
        d = os.path.join(work, model)
        os.makedirs(d, exist_ok=True)
        for k, v in arrays.items():
            np.save(os.path.join(d, k + ".npy"), v)
        for world, m in ((1, N), (1, 5), (2, 5)):
            init, final = os.path.join(d, "init.safetensors"), os.path.join(d, "final.safetensors")
            r = vdp(["--dataset", "npy", "--data-dir", d, "--model", model, "--dtype", "float64", "--global-batch",
                     str(N), "--micro-batch", str(m), "--epochs", "1", "--optimizer", "sgd", "--lr", "0.1", "--quiet",
                     "--save-init-weights", init, "--save-weights", final] + extra, world)
            if r.returncode != 0:
                check(False, f"{name} W={world} m={m}: vdp-train failed: {r.stderr.strip()}")
                continue
            twin = twin_factory().to(torch.float64)
            twin.load_state_dict(load_file(init))
            twin.train()
            x = torch.from_numpy(np.asarray(arrays["x"]))
            as_float = x.is_floating_point() or x.dtype in (torch.bool, torch.uint8)
            x = x.to(torch.float64) if as_float else x.long()
            loss = torch_loss(twin(x), arrays)
            loss.backward()
            with torch.no_grad():
                for p in twin.parameters():
                    p -= 0.1 * p.grad
            got, want = load_file(final), twin.state_dict()
            scale = max(v.abs().max().item() for v in want.values())
            diff = max((got[k] - want[k]).abs().max().item() for k in want) / scale
            check(diff <= 1e-13, f"{name} W={world} m={m}: one step equals PyTorch's full batch: rel diff {diff:.3g}")

    # Bad arrays: one line, exit 2.
    bad = os.path.join(work, "bad")
    os.makedirs(bad)
    np.save(os.path.join(bad, "x.npy"), np.zeros((10, 3), np.float32))
    np.save(os.path.join(bad, "y.npy"), np.zeros((9,), np.int64))
    for args, needle in (([], "do not belong together"),):
        r = vdp(["--dataset", "npy", "--data-dir", bad, "--model", "mlp"] + args)
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 2 and len(lines) == 1 and needle in lines[0], f"bad arrays: exit {r.returncode}: {lines}")
    np.save(os.path.join(bad, "y.npy"), np.zeros((10,), np.int64))
    r = vdp(["--dataset", "npy", "--data-dir", bad, "--model", "fmnist-cnn"])
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and len(lines) == 1 and "does not fit this data" in lines[0],
          f"a model that does not fit the arrays: exit {r.returncode}: {lines}")
    np.save(os.path.join(bad, "x.npy"), np.zeros((10, 3), np.float32).T.copy().T)  # still C order after copy
    with open(os.path.join(bad, "x.npy"), "r+b") as f:
        f.truncate(100)
    r = vdp(["--dataset", "npy", "--data-dir", bad, "--model", "mlp"])
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and len(lines) == 1 and "truncated" in lines[0], f"a truncated x.npy: exit {r.returncode}: {lines}")

checks.finish("npy")
