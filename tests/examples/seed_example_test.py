"""The seed example of the background question, through vdp's library (seed_example.cpp) against
PyTorch itself: the same MyModel, tensors, BCELoss and SGD(lr=0.001) step on the whole batch of 32.
For float32 and float64, micro-batches of 4 (K=8, as in the question), 5 (uneven: 5,5,...,2) and
32, at W=1 and at W=2 under mpirun:
  - the C++ model's initial weights equal PyTorch's MyModel() after torch.manual_seed(0), bit for bit
    (LibTorch and PyTorch share the generator and the initialisers);
  - vdp's step loss equals PyTorch's full-batch loss, and its weights after the step equal PyTorch's,
    within float32 rounding (relative 2e-6 of the largest weight) or float64 rounding (1e-15);
  - the question's own accumulation loop (sub-batches of 4, loss / num_sub_batches) agrees too.
Usage: seed_example_test.py SEED_EXAMPLE MPIRUN
"""
import os
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vdp_testlib import Checks, run  # noqa: E402

checks = Checks()
check = checks.check

exe, mpirun = sys.argv[1], sys.argv[2]



class MyModel(nn.Module):  # the question's model, verbatim
    def __init__(self):
        super().__init__()
        num_outputs = 5
        self.conv_layer = nn.Conv2d(3, 10, 3, 1, 1)
        self.fc_layer = nn.Linear(10 * 5 * 5, num_outputs)

    def forward(self, x):
        x = self.conv_layer(x)
        x = F.max_pool2d(x, 2, 2, 0, 1, False, False)
        x = F.relu(x)
        x = self.fc_layer(x.flatten(start_dim=1))
        x = torch.sigmoid(x)
        return x


def pytorch_step(dtype, init, accumulate):
    torch.manual_seed(0)
    model = MyModel().to(dtype)
    model.load_state_dict(init)
    objective = nn.BCELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    torch.manual_seed(1)
    batch_size = 32
    input_data = torch.randn((batch_size, 3, 10, 10)).to(dtype)
    targets = torch.randint(0, 1, (batch_size, 5)).to(dtype)
    optimizer.zero_grad()
    if not accumulate:  # entire batch
        loss = objective(model(input_data), targets)
        loss.backward()
        loss_value = loss.item()
    else:  # the question's gradient accumulation
        sub_batch_size = 4
        num_sub_batches = batch_size // sub_batch_size
        loss_value = 0.0
        for i in range(num_sub_batches):
            s, e = sub_batch_size * i, sub_batch_size * (i + 1)
            sub_loss = objective(model(input_data[s:e]), targets[s:e]) / num_sub_batches
            sub_loss.backward()
            loss_value += sub_loss.item()
    optimizer.step()
    return loss_value, {k: v.detach() for k, v in model.state_dict().items()}


def rel_diff(a, b):
    scale = max(v.abs().max().item() for v in b.values())
    return max((a[k].double() - b[k].double()).abs().max().item() for k in b) / scale


with tempfile.TemporaryDirectory() as work:
    for dtype_name, dtype, tol in (("float32", torch.float32, 2e-6), ("float64", torch.float64, 1e-15)):
        torch.manual_seed(0)
        python_init = {k: v.to(dtype) for k, v in MyModel().state_dict().items()}
        for world in (1, 2):
            for m in (4, 5, 32):
                init, final = os.path.join(work, "init.safetensors"), os.path.join(work, "final.safetensors")
                r = run(exe, ["--dtype", dtype_name, "--micro-batch", str(m), "--save-init-weights", init,
                              "--save-weights", final], world, mpirun)
                if r.returncode != 0:
                    print(r.stdout, r.stderr)
                    check(False, f"{dtype_name} W={world} m={m}: seed_example ran")
                    continue
                vdp_loss = float(next(l for l in r.stdout.splitlines() if l.startswith("Loss value:")).split()[-1])
                vdp_init, vdp_final = load_file(init), load_file(final)
                name = f"{dtype_name} W={world} m={m}"
                check(all(torch.equal(vdp_init[k], python_init[k]) for k in python_init),
                      f"{name}: initial weights equal PyTorch's MyModel() bit for bit")
                for accumulate in (False, True):
                    loss, want = pytorch_step(dtype, vdp_init, accumulate)
                    what = "the question's accumulation loop" if accumulate else "PyTorch's full-batch step"
                    d = rel_diff(vdp_final, want)
                    check(d <= tol, f"{name}: weights after the step equal {what}: max rel diff {d:.3g} (tol {tol:g})")
                    dl = abs(vdp_loss - loss) / abs(loss)
                    check(dl <= tol * 10, f"{name}: loss {vdp_loss:.10g} vs {loss:.10g} ({what}), rel {dl:.3g}")

checks.finish("seed example")
