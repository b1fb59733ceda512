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


class BasicBlock(nn.Module):
    """torchvision's BasicBlock, with the norm layer chosen by name."""

    def __init__(self, inp, out, stride, norm):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        n1 = _norm(norm, out)
        if n1 is not None:
            self.bn1 = n1
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        n2 = _norm(norm, out)
        if n2 is not None:
            self.bn2 = n2
        self.downsample = None
        if stride != 1 or inp != out:
            layers = [nn.Conv2d(inp, out, 1, stride, bias=False)]
            n3 = _norm(norm, out)
            if n3 is not None:
                layers.append(n3)
            self.downsample = nn.Sequential(*layers)

    def forward(self, x):
        out = self.conv1(x)
        out = F.relu(self.bn1(out) if hasattr(self, "bn1") else out)
        out = self.conv2(out)
        out = self.bn2(out) if hasattr(self, "bn2") else out
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNet18(nn.Module):
    """--model resnet18 [--norm ...] [--channels-last]: torchvision's resnet18 names, with a 3x3
    stride-1 stem and no max-pooling (small images), global average pooling, fc."""

    def __init__(self, in_channels=1, classes=10, norm="none"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        n = _norm(norm, 64)
        if n is not None:
            self.bn1 = n
        widths, inp = [64, 128, 256, 512], 64
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(inp, w, stride, norm), BasicBlock(w, w, 1, norm)))
            inp = w
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(self.bn1(x) if hasattr(self, "bn1") else x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class SeqGru(nn.Module):
    """--model seq-gru: embed -> gru -> head over tokens (vocabulary 16), logits [n, T, 16]."""

    def __init__(self, hidden, vocab=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x):
        return self.head(self.gru(self.embed(x))[0])


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x):
        n, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, 2)
        q, k, v = (a.view(n, t, self.heads, c // self.heads).transpose(1, 2) for a in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(n, t, c))


class MlpBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MlpBlock(width)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """--model gpt (--layers, --heads, --hidden width, --context; vocabulary from the data) and
    gpt2-small (GPT(50257, 1024, 12, 12, 768)): pre-norm decoder, output head tied to wte."""

    def __init__(self, vocab=257, context=64, layers=2, heads=4, width=64):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.h = nn.ModuleList([Block(width, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for block in self.h:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)


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
    if model == "resnet18":
        return ResNet18(1, 10, norm)
    raise ValueError(f"unknown model {model!r}")
