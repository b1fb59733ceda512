"""The PyTorch twins of vdp's built-in models: the same layers, parameter names and buffer names,
so weights written by vdp (--save-weights, safetensors) load into them with load_state_dict, and
weights saved from them load into vdp (--init-weights).

    import sys; sys.path.insert(0, "launch")
    from safetensors.torch import load_file, save_file
    from vdp_models import FmnistCnn
    model = FmnistCnn(norm="batch")
    model.load_state_dict(load_file("out/weights.safetensors"))   # vdp -> PyTorch
    save_file(model.state_dict(), "mine.safetensors")              # PyTorch -> vdp --init-weights

vdp-train --model NAME corresponds to make_model(NAME, ...) below.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Mlp(nn.Module):
    """--model mlp: fc1 -> relu -> fc2 -> relu -> fc3 on the flattened input
    (fashion-mnist: 784 -> hidden -> hidden -> 10; regression: 16 -> hidden -> hidden -> 4)."""

    def __init__(self, inputs, hidden, outputs):
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, outputs)

    def forward(self, x):
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class SeedConvnet(nn.Module):
    """--model seed-convnet: MyModel of the background question, input [n, 3, 10, 10]."""

    def __init__(self):
        super().__init__()
        self.conv_layer = nn.Conv2d(3, 10, 3, 1, 1)
        self.fc_layer = nn.Linear(10 * 5 * 5, 5)

    def forward(self, x):
        x = self.conv_layer(x)
        x = F.max_pool2d(x, 2, 2, 0, 1, False, False)
        x = F.relu(x)
        x = self.fc_layer(x.flatten(start_dim=1))
        return torch.sigmoid(x)


def _norm(norm, channels):
    if norm == "none":
        return None
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "syncbatch":
        return nn.SyncBatchNorm(channels)
    if norm == "group":
        return nn.GroupNorm(8, channels)
    raise ValueError(f"norm must be none, batch, syncbatch or group, not {norm!r}")


class FmnistCnn(nn.Module):
    """--model fmnist-cnn [--norm none|batch|syncbatch|group], input [n, 1, 28, 28], 10 classes."""

    def __init__(self, norm="none"):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=bias)
        n1 = _norm(norm, 32)
        if n1 is not None:
            self.norm1 = n1
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=bias)
        n2 = _norm(norm, 64)
        if n2 is not None:
            self.norm2 = n2
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def _block(self, x, name):
        if hasattr(self, name):
            x = getattr(self, name)(x)
        return F.max_pool2d(F.relu(x), 2)

    def forward(self, x):
        x = self._block(self.conv1(x), "norm1")
        x = self._block(self.conv2(x), "norm2")
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class SeqGru(nn.Module):
    """--model seq-gru: embed -> gru -> head over tokens (vocabulary 16), logits [n, T, 16]."""

    def __init__(self, hidden, vocab=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x):
        return self.head(self.gru(self.embed(x))[0])


def make_model(model, dataset="fashion-mnist", hidden=128, norm="none"):
    """The twin of vdp-train --model MODEL --dataset DATASET --hidden HIDDEN --norm NORM."""
    if model == "mlp":
        return Mlp(28 * 28, hidden, 10) if dataset == "fashion-mnist" else Mlp(16, hidden, 4)
    if model == "seed-convnet":
        return SeedConvnet()
    if model == "fmnist-cnn":
        return FmnistCnn(norm)
    if model == "seq-gru":
        return SeqGru(hidden)
    raise ValueError(f"unknown model {model!r}")
