"""vdp's built-in models and their PyTorch twins (launch/vdp_models.py) share parameter and buffer
names, both ways, for every model and norm:
  1. vdp -> PyTorch: weights saved by vdp-train (--save-weights) load into the twin with
     load_state_dict(safetensors.torch.load_file(...)) (strict: no missing or unexpected keys);
  2. PyTorch -> vdp: the twin's own state_dict, saved with safetensors.torch.save_file, starts
     vdp-train (--init-weights) and comes back bit-identical (--save-init-weights);
  3. same function: on Fashion-MNIST, the twin's loss on the first step's samples (from
     --dry-run --print-ids) equals the loss vdp-train reports for that step, float32 rounding.
Usage: pytorch_twins_test.py VDP_TRAIN LAUNCH_DIR
"""
import json
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vdp_testlib import Checks, run  # noqa: E402

checks = Checks()
check = checks.check

vdp_train, launch = sys.argv[1], sys.argv[2]
sys.path.insert(0, launch)
from vdp_models import make_model  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"
CASES = [  # (model, dataset, norm, extra options)
    ("mlp", "fashion-mnist", "none", ["--hidden", "32"]),
    ("mlp", "regression", "none", ["--hidden", "24", "--samples", "64"]),
    ("seed-convnet", "bce-toy", "none", ["--samples", "64"]),
    ("fmnist-cnn", "fashion-mnist", "none", []),
    ("fmnist-cnn", "fashion-mnist", "batch", []),
    ("fmnist-cnn", "fashion-mnist", "group", []),
    ("fmnist-cnn", "fashion-mnist", "syncbatch", []),
    ("seq-gru", "sequence", "none", ["--hidden", "16", "--samples", "64"]),
    ("resnet18", "fashion-mnist", "batch", []),
    ("resnet18", "fashion-mnist", "group", ["--channels-last"]),
]



def vdp(args):
    r = run(vdp_train, args)
    if r.returncode != 0:
        raise SystemExit(f"vdp-train {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def load_fmnist(ids):
    import gzip
    with gzip.open(os.path.join(FMNIST, "train-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(FMNIST, "train-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    x = torch.from_numpy(images[ids].copy()).to(torch.float64).div_(255.0).sub_(0.2860).div_(0.3530).float()
    return x, torch.from_numpy(labels[ids].astype(np.int64))


with tempfile.TemporaryDirectory() as work:
    for model, dataset, norm, extra in CASES:
        name = f"{model}/{dataset}/norm={norm}"
        base = ["--model", model, "--dataset", dataset, "--norm", norm, "--global-batch", "32", "--micro-batch", "32",
                "--quiet", "--eval", "false"] + extra
        hidden = int(extra[extra.index("--hidden") + 1]) if "--hidden" in extra else 128
        saved = os.path.join(work, "vdp.safetensors")
        vdp(base + ["--max-steps", "2", "--lr", "0.05", "--save-weights", saved])
        twin = make_model(model, dataset, hidden, norm)
        theirs = load_file(saved)
        missing, unexpected = twin.load_state_dict(theirs, strict=False)
        check(not missing and not unexpected, f"{name}: vdp's weights load into the twin "
              f"(missing {list(missing)}, unexpected {list(unexpected)})")
        check(all(torch.equal(twin.state_dict()[k], v) for k, v in theirs.items()), f"{name}: values identical")

        # PyTorch -> vdp: the twin's own weights (fresh PyTorch init, so unlike vdp's), as saved by PyTorch.
        torch.manual_seed(7)
        twin = make_model(model, dataset, hidden, norm)
        mine = os.path.join(work, "torch.safetensors")
        save_file({k: v.contiguous() for k, v in twin.state_dict().items()}, mine)
        back = os.path.join(work, "back.safetensors")
        metrics = os.path.join(work, "m.jsonl")
        vdp(base + ["--max-steps", "1", "--lr", "0", "--init-weights", mine, "--save-init-weights", back,
                    "--metrics", metrics])
        got = load_file(back)
        want = twin.state_dict()
        check(set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want),
              f"{name}: the twin's state_dict starts vdp-train unchanged")

        if dataset == "fashion-mnist":
            # One micro-batch of 32 in train mode, lr 0: vdp's step loss is the twin's loss on the same ids.
            ids_out = vdp(base + ["--dry-run", "--print-ids"])
            line = next(l for l in ids_out.splitlines() if l.startswith("step 0 micro-step 0 rank 0:"))
            ids = [int(t) for t in line.split(":")[1].split()]
            x, y = load_fmnist(ids)
            twin.train()
            with torch.no_grad():
                ours = F.cross_entropy(twin(x), y).item()
            with open(metrics) as f:
                vdp_loss = next(json.loads(l) for l in f if '"event":"step"' in l)["loss"]
            check(abs(ours - vdp_loss) <= 1e-5 * abs(ours), f"{name}: same loss on step 0: vdp {vdp_loss:.8f}, "
                  f"PyTorch {ours:.8f}")

checks.finish("twins")
