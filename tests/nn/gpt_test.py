"""--model gpt on --dataset tokens, against PyTorch itself:
  - launch/make_shards.py writes llm.c-format shards (header 256 x int32: 20240520, 1, count; uint16
    tokens) that Python reads back to the same bytes;
  - vdp-train's GPT has the names of the plain PyTorch GPT (launch/vdp_models.py): its initial
    weights load into the twin strictly;
  - one step over every sample of the corpus (documents of uneven length, so micro-batches hold
    different token counts), in float64, with one micro-batch, micro-batches of 5 (W=1), 3 (W=2),
    2 and 7 (W=3), equals PyTorch's full-batch step with the token-weighted loss (sum over real
    tokens / their count) to 1e-12 relative, and so does the step's loss;
  - dividing by K instead (the usual recipe) would be far off: the same check against that fails;
  - damaged shards (magic, version, count, size) are one line and exit 2;
  - training prints validation loss and perplexity each epoch.
Usage: gpt_test.py VDP_TRAIN LAUNCH_DIR MPIRUN
"""
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vdp_testlib import Checks, run  # noqa: E402

checks = Checks()
check = checks.check

vdp_train, launch, mpirun = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, launch)
from vdp_models import GPT  # noqa: E402

CONTEXT = 16



def vdp(args, world=1):
    return run(vdp_train, args, world, mpirun)


def read_shard(path):
    with open(path, "rb") as f:
        header = struct.unpack("<256i", f.read(1024))
        tokens = list(struct.unpack(f"<{header[2]}H", f.read()))
    return header, tokens


def samples(tokens, eot=256):  # vdp's rule: documents start at end-of-text, pieces of <= context + 1
    out, doc, n = [], 0, len(tokens)
    while doc < n:
        end = doc + 1
        while end < n and tokens[end] != eot:
            end += 1
        for s in range(doc, end - 1, CONTEXT):
            out.append(tokens[s:min(s + CONTEXT + 1, end)])
        doc = end
    return out


with tempfile.TemporaryDirectory() as work:
    rng = random.Random(1)
    words = ["the", "model", "gradient", "window", "rank", "token", "batch", "sum", "count", "step"]
    text = "\n\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(40))
    corpus = os.path.join(work, "corpus.txt")
    with open(corpus, "w") as f:
        f.write(text)
    shards = os.path.join(work, "shards")
    r = subprocess.run([sys.executable, os.path.join(launch, "make_shards.py"), "--out", shards, "--val-every", "8",
                        corpus], capture_output=True, text=True)
    check(r.returncode == 0, f"make_shards.py: {r.stdout.strip()} {r.stderr.strip()}")
    header, train_tokens = read_shard(os.path.join(shards, "train_000000.bin"))
    check(header[0] == 20240520 and header[1] == 1 and header[2] == len(train_tokens),
          f"llm.c shard header: magic {header[0]}, version {header[1]}, {header[2]} tokens")
    paragraphs = [p.strip().encode() for p in text.split("\n\n") if p.strip()]
    want = []
    for i, p in enumerate(paragraphs):
        if i % 8 != 7:
            want += [256] + list(p)
    check(train_tokens == want, "the train shard holds the paragraphs' bytes, each after an end-of-text token")

    data = samples(train_tokens)
    n = len(data)
    lengths = sorted({len(s) - 1 for s in data})
    check(len(lengths) > 3, f"{n} samples with uneven target counts ({lengths[:6]}...)")
    base = ["--dataset", "tokens", "--data-dir", shards, "--model", "gpt", "--layers", "2", "--heads", "2",
            "--hidden", "16", "--context", str(CONTEXT), "--dtype", "float64", "--global-batch", str(n),
            "--epochs", "1", "--optimizer", "sgd", "--lr", "0.5", "--quiet", "--eval", "false"]
    for world, m in ((1, n), (1, 5), (2, 3), (3, 2), (3, 7)):
        init, final = os.path.join(work, "init.safetensors"), os.path.join(work, "final.safetensors")
        step_metrics = os.path.join(work, "step.jsonl")
        r = vdp(base + ["--micro-batch", str(m), "--save-init-weights", init, "--save-weights", final,
                        "--metrics", step_metrics], world)
        name = f"W={world} m={m}"
        if r.returncode != 0:
            check(False, f"{name}: vdp-train failed: {r.stderr.strip()}")
            continue
        twin = GPT(257, CONTEXT, 2, 2, 16).double()
        try:
            twin.load_state_dict(load_file(init), strict=True)
            loaded = True
        except RuntimeError as e:
            loaded = False
            print(e)
        check(loaded, f"{name}: vdp's GPT weights load into the PyTorch GPT (strict)")
        t = max(len(s) - 1 for s in data)
        x = torch.zeros(n, t, dtype=torch.long)
        y = torch.zeros(n, t, dtype=torch.long)
        mask = torch.zeros(n, t, dtype=torch.float64)
        for i, s in enumerate(data):
            x[i, :len(s) - 1] = torch.tensor(s[:-1])
            y[i, :len(s) - 1] = torch.tensor(s[1:])
            mask[i, :len(s) - 1] = 1
        per_token = F.cross_entropy(twin(x).flatten(0, 1), y.flatten(), reduction="none")
        loss = (per_token * mask.flatten()).sum() / mask.sum()
        loss.backward()
        with open(step_metrics) as f:
            vdp_loss = next(json.loads(l) for l in f if '"event":"step"' in l)["loss"]
        dl = abs(vdp_loss - loss.item()) / loss.item()
        check(dl <= 1e-12, f"{name}: step loss {vdp_loss:.15g} vs PyTorch {loss.item():.15g} (rel {dl:.3g})")
        with torch.no_grad():
            for p in twin.parameters():
                p -= 0.5 * p.grad
        got, want_w = load_file(final), twin.state_dict()
        scale = max(v.abs().max().item() for v in want_w.values())
        diff = max((got[k] - want_w[k]).abs().max().item() for k in want_w) / scale
        check(diff <= 1e-12, f"{name}: one step equals PyTorch's token-weighted full batch: rel diff {diff:.3g}")
        if m == 5:
            # The negative control: a mean per micro-batch divided by K is a different step.
            twin2 = GPT(257, CONTEXT, 2, 2, 16).double()
            twin2.load_state_dict(load_file(init))
            k = (n + m - 1) // m
            for j in range(k):
                sl = slice(j * m, (j + 1) * m)
                pt = F.cross_entropy(twin2(x[sl]).flatten(0, 1), y[sl].flatten(), reduction="none")
                ((pt * mask[sl].flatten()).sum() / mask[sl].sum() / k).backward()
            with torch.no_grad():
                for p in twin2.parameters():
                    p -= 0.5 * p.grad
            d2 = max((got[kk] - twin2.state_dict()[kk]).abs().max().item() for kk in want_w) / scale
            check(d2 > 1e-6, f"{name}: dividing by K instead lands {d2:.3g} away (the control differs)")

    # The shard reader: a damaged shard is one line and exit 2.
    good = open(os.path.join(shards, "train_000000.bin"), "rb").read()
    bad_dir = os.path.join(work, "bad")
    os.makedirs(bad_dir)
    for label, data, needle in (("magic", b"\0\0\0\0" + good[4:], "magic 0"),
                                ("version", good[:4] + struct.pack("<i", 2) + good[8:], "version 2"),
                                ("count", good[:-6], "truncated or damaged"),
                                ("short", good[:100], "header alone is 1024")):
        with open(os.path.join(bad_dir, "train_000000.bin"), "wb") as f:
            f.write(data)
        r = vdp(["--dataset", "tokens", "--data-dir", bad_dir, "--model", "gpt", "--quiet"])
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 2 and len(lines) == 1 and needle in lines[0], f"bad shard ({label}): exit {r.returncode}: {lines}")

    metrics = os.path.join(work, "m.jsonl")
    r = vdp(["--dataset", "tokens", "--data-dir", shards, "--model", "gpt", "--layers", "1", "--heads", "2",
             "--hidden", "16", "--context", str(CONTEXT), "--global-batch", "16", "--micro-batch", "4",
             "--epochs", "2", "--optimizer", "adamw", "--lr", "0.01", "--metrics", metrics])
    line = [l for l in r.stdout.splitlines() if l.startswith("epoch 2/2")]
    check(r.returncode == 0 and line and "test_perplexity" in line[0], f"epoch line with perplexity: {line}")
    with open(metrics) as f:
        evals = [json.loads(l) for l in f if '"event":"eval"' in l]
    check(len(evals) == 2 and all(abs(e["test_perplexity"] - 2.718281828 ** e["test_loss"]) < 1e-6 * e["test_perplexity"]
                                  for e in evals), f"eval records carry perplexity = exp(test_loss): {evals[-1:]}")

checks.finish("gpt")
