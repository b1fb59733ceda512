"""--model torchscript: a model defined in Python (conv, BatchNorm, linear), scripted with
torch.jit.script and saved, is trained by vdp-train like a built-in model:
  - its parameters and buffers keep the module's names: vdp's weights load back into the Python
    module with load_state_dict (strict);
  - one step over the whole batch of Fashion-MNIST samples (--dtype float64, micro-batch = batch, so
    BatchNorm sees the same batch) equals PyTorch's step on the same module, parameters and running
    statistics, to 1e-12 relative; with uneven micro-batches at W=2 on a model without BatchNorm
    as well;
  - a traced module trains too; a file that is no TorchScript, or a module that does not fit the
    data, is one line and exit 2.
Usage: torchscript_test.py VDP_TRAIN MPIRUN
"""
import gzip
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vdp_testlib import Checks, run  # noqa: E402

checks = Checks()
check = checks.check

vdp_train, mpirun = sys.argv[1], sys.argv[2]
FMNIST = "/usr/share/datasets/fashion-mnist"



class Net(nn.Module):
    def __init__(self, bn=True):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8) if bn else nn.Identity()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 14 * 14, 10))

    def forward(self, x):
        return self.head(F.max_pool2d(F.relu(self.bn(self.conv(x))), 2))


def vdp(args, world=1):
    return run(vdp_train, args, world, mpirun)


def fmnist(ids):
    with gzip.open(os.path.join(FMNIST, "train-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(FMNIST, "train-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    x = torch.from_numpy(images[ids].copy()).to(torch.float64).div_(255.0).sub_(0.2860).div_(0.3530)
    return x, torch.from_numpy(labels[ids].astype(np.int64))


with tempfile.TemporaryDirectory() as work:
    for bn, world, m in ((True, 1, 32), (False, 2, 5)):
        torch.manual_seed(3)
        model = Net(bn)
        path = os.path.join(work, "net.pt")
        torch.jit.script(model).save(path)
        init, final = os.path.join(work, "init.safetensors"), os.path.join(work, "final.safetensors")
        base = ["--model", "torchscript", "--model-file", path, "--dtype", "float64", "--global-batch", "32",
                "--micro-batch", str(m), "--optimizer", "sgd", "--lr", "0.1", "--quiet", "--eval", "false"]
        r = vdp(base + ["--max-steps", "1", "--save-init-weights", init, "--save-weights", final], world)
        name = f"{'conv+BatchNorm' if bn else 'conv'} W={world} m={m}"
        if r.returncode != 0:
            check(False, f"{name}: vdp-train failed: {r.stderr.strip()}")
            continue
        got_init = load_file(init)
        want_init = {k: v.double() for k, v in model.state_dict().items() if v.is_floating_point()}
        check(all(torch.equal(got_init[k], want_init[k]) for k in want_init),
              f"{name}: the module's own weights under its own names ({sorted(got_init)[:3]}...)")
        ids_out = vdp(base + ["--dry-run", "--print-ids"]).stdout
        ids = []
        for line in ids_out.splitlines():
            if line.startswith("step 0 "):
                ids += [int(t) for t in line.split(":")[1].split()]
        x, y = fmnist(sorted(ids))
        model = model.double()
        model.train()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
        got = load_file(final)
        want = model.state_dict()
        missing = set(want) ^ set(got)
        check(not missing, f"{name}: vdp's weights have exactly the module's names (differ: {sorted(missing)})")
        scale = max(v.abs().max().item() for v in want.values() if v.is_floating_point())
        diff = max((got[k].double() - want[k].double()).abs().max().item() for k in want if want[k].is_floating_point())
        check(diff <= 1e-12 * scale, f"{name}: one step equals PyTorch's (parameters and running statistics): "
              f"max diff {diff:.3g}")
        fresh = Net(bn).double()
        try:
            fresh.load_state_dict(load_file(final), strict=True)
            loaded = all(torch.equal(fresh.state_dict()[k], v) for k, v in load_file(final).items())
        except RuntimeError as e:
            loaded = False
            print(e)
        check(loaded, f"{name}: load_state_dict(load_file(vdp's weights)) into the Python module, strict")

    traced = os.path.join(work, "traced.pt")
    torch.jit.trace(Net(False), torch.zeros(2, 1, 28, 28)).save(traced)
    r = vdp(["--model", "torchscript", "--model-file", traced, "--global-batch", "32", "--micro-batch", "8",
             "--max-steps", "3", "--quiet", "--eval", "false"])
    check(r.returncode == 0 and "done: 3 steps" in r.stdout, f"a traced module trains: {r.stdout.strip()[-80:]}")

    junk = os.path.join(work, "junk.pt")
    with open(junk, "wb") as f:
        f.write(b"not a zip archive")
    for args, needle in ((["--model-file", junk], "is not a TorchScript module"),
                         (["--model-file", traced, "--dataset", "regression"], "does not fit this data"),
                         ([], "needs --model-file")):
        r = vdp(["--model", "torchscript", "--quiet"] + args)
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 2 and len(lines) == 1 and needle in lines[0], f"exit {r.returncode}, one line: {lines}")

    # A module that raises only when training: the probe (eval mode) passes it, the first step's line
    # is the module's own exception text, not "The following operation failed in the TorchScript
    # interpreter". A module whose output is detached (no gradient): one line and exit 2 at start.
    class RaisesInTraining(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(784, 10)

        def forward(self, x):
            if self.training:
                raise RuntimeError("vdp-test: this module refuses to train")
            return self.fc(x.flatten(1))

    class Detached(RaisesInTraining):
        def forward(self, x):
            return self.fc(x.flatten(1)).detach()

    for cls, code, needle in ((RaisesInTraining, 1, "vdp-test: this module refuses to train"),
                              (Detached, 2, "has no gradient with respect to the parameters")):
        path = os.path.join(work, cls.__name__ + ".pt")
        torch.jit.script(cls()).save(path)
        r = vdp(["--model", "torchscript", "--model-file", path, "--global-batch", "32", "--max-steps", "1", "--quiet",
                 "--eval", "false"])
        lines = r.stderr.strip().splitlines()
        check(r.returncode == code and len(lines) == 1 and needle in lines[0],
              f"{cls.__name__}: exit {r.returncode} (want {code}), one line with '{needle}': {lines}")

checks.finish("torchscript")
