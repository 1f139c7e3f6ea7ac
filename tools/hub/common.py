"""Shared by the hub scripts: the data split, batched augmentation, and the model architectures.

Images are float tensors [N, 3, S, S] in [0, 1]. Augmentation runs on whole batches in torch:
a random affine warp of an RGBA source (scale, rotation, shift, flip), composited over a random
background (flat colour, gradient, or smooth noise), then brightness/contrast/saturation jitter
and pixel noise.
"""

import json
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Styles the classifiers train on; the others are held out (near probes, out-of-style tests).
TRAIN_STYLES = ["apple", "google", "twitter", "facebook", "noto", "twemoji", "fluent-emoji-flat", "emojione"]
HELDOUT_STYLES = ["openmoji", "noto-v1", "emojione-v1"]
# Categories whose concepts may be hub classes (Symbols are mostly text in boxes).
HUB_CATEGORIES = {
    "Smileys & Emotion",
    "People & Body",
    "Animals & Nature",
    "Food & Drink",
    "Travel & Places",
    "Activities",
    "Objects",
}


def load_emoji(data_dir):
    z = np.load(f"{data_dir}/emoji.npz")
    meta = json.load(open(f"{data_dir}/emoji.json"))
    return z["images"], z["concept"], z["style"], meta


def choose_concepts(meta, concept, style, n_hub, seed):
    """Hub concepts (seeded sample among those with every training style) and the half of them
    that text queries evaluate (held out of the text tower's training)."""
    styles = meta["styles"]
    need = {styles.index(s) for s in TRAIN_STYLES}
    have = {}
    for c, s in zip(concept.tolist(), style.tolist()):
        have.setdefault(c, set()).add(s)
    eligible = [
        c
        for c, con in enumerate(meta["concepts"])
        if con["category"] in HUB_CATEGORIES and need <= have.get(c, set())
    ]
    rng = np.random.default_rng(seed)
    hub = sorted(rng.choice(eligible, n_hub, replace=False).tolist())
    text_eval = sorted(rng.choice(hub, n_hub // 2, replace=False).tolist())
    return hub, text_eval


def to_tensor_rgba(images):
    """uint8 [M, S, S, 4] -> float [M, 4, S, S] with RGB premultiplied by alpha."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x[:, :3] *= x[:, 3:4]
    return x


def backgrounds(n, size, gen):
    """Flat colours, linear gradients and smooth noise, a third each (in expectation)."""
    kind = torch.randint(0, 3, (n,), generator=gen)
    c1 = torch.rand(n, 3, 1, 1, generator=gen)
    c2 = torch.rand(n, 3, 1, 1, generator=gen)
    t = torch.linspace(0, 1, size)
    ang = torch.rand(n, generator=gen) * 2 * math.pi
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    ramp = (xx[None] * torch.cos(ang)[:, None, None] + yy[None] * torch.sin(ang)[:, None, None])
    ramp = (ramp - ramp.amin((1, 2), keepdim=True)) / (
        ramp.amax((1, 2), keepdim=True) - ramp.amin((1, 2), keepdim=True) + 1e-6
    )
    grad = c1 + (c2 - c1) * ramp[:, None]
    noise = F.interpolate(torch.rand(n, 3, 4, 4, generator=gen), size=(size, size), mode="bicubic",
                          align_corners=False).clamp(0, 1)
    flat = c1.expand(n, 3, size, size)
    k = kind.view(n, 1, 1, 1)
    return torch.where(k == 0, flat, torch.where(k == 1, grad, noise))


def warp(src, size, gen, scale=(0.6, 1.0), rot=25.0, flip=True):
    """Random affine warps of premultiplied RGBA sources [N, 4, s, s] to [N, 4, size, size]."""
    n = src.shape[0]
    s = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=gen)
    a = (torch.rand(n, generator=gen) * 2 - 1) * rot * math.pi / 180
    # The shift keeps most of the object inside the frame.
    room = (1 - s).clamp(min=0.05)
    tx = (torch.rand(n, generator=gen) * 2 - 1) * room
    ty = (torch.rand(n, generator=gen) * 2 - 1) * room
    fx = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    theta = torch.stack(
        [torch.stack([cos * fx, -sin, -tx / s], 1), torch.stack([sin * fx, cos, -ty / s], 1)], 1
    )
    grid = F.affine_grid(theta, (n, 4, size, size), align_corners=False)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def jitter(x, gen, strength=1.0):
    n = x.shape[0]
    b = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.25 * strength
    c = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.25 * strength
    sat = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.3 * strength
    gray = x.mean(1, keepdim=True)
    x = gray + (x - gray) * sat
    m = x.mean((1, 2, 3), keepdim=True)
    x = (x - m) * c + m
    x = x * b
    x = x + torch.randn(x.shape, generator=gen) * 0.02 * strength
    return x.clamp(0, 1)


def flip_shift(x, gen):
    """Random horizontal flips and shifts of up to 3 px (reflect padding), same size out."""
    n, size = x.shape[0], x.shape[-1]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    pad = F.pad(x, (3, 3, 3, 3), mode="reflect")
    dx, dy = (int(v) for v in torch.randint(0, 7, (2,), generator=gen))
    return pad[:, :, dy : dy + size, dx : dx + size]


def compose(src, size, gen, **warp_args):
    """Augmented RGB images [N, 3, size, size] from premultiplied RGBA sources."""
    fg = warp(src, size, gen, **warp_args)
    bg = backgrounds(src.shape[0], size, gen)
    x = fg[:, :3] + (1 - fg[:, 3:4]) * bg
    return jitter(x, gen)


# ---------------------------------------------------------------------------------------------
# Architectures. Every model maps float [N, 3, S, S] (already normalized) to [N, classes].


class ConvNet(nn.Module):
    def __init__(self, classes, width, depth, double=True, bn=True, act="relu"):
        super().__init__()
        Act = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}[act]
        # A stride-2 stem: 32 px inputs are worked on at 16 px (CPU budget of the hub).
        layers = [nn.Conv2d(3, width, 3, 2, 1, bias=not bn)]
        layers += [nn.BatchNorm2d(width)] if bn else []
        layers += [Act()]
        c_in, w = width, width
        for d in range(depth):
            layers += [nn.Conv2d(c_in, w, 3, padding=1, bias=not bn)]
            layers += [nn.BatchNorm2d(w)] if bn else []
            layers += [Act()]
            if double:
                layers += [nn.Conv2d(w, w, 3, padding=1, bias=not bn)]
                layers += [nn.BatchNorm2d(w)] if bn else []
                layers += [Act()]
            if d < depth - 1:
                layers += [nn.MaxPool2d(2)]
            c_in, w = w, min(w * 2, 192)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


class Block(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.c1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(c_out)
        self.c2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(c_out)
        self.skip = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.skip(x))


class ResNet(nn.Module):
    def __init__(self, classes, width, stages, blocks):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, c = [], width
        for s in range(stages):
            out = width * 2**s
            for b in range(blocks):
                layers.append(Block(c, out, 2 if (b == 0 and s > 0) else 1))
                c = out
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        return self.head(self.layers(self.stem(x)).mean((2, 3)))


class MLP(nn.Module):
    def __init__(self, classes, hidden, depth, size):
        super().__init__()
        self.pool = 2  # 32 px -> 16 px before flattening
        d_in = 3 * (size // self.pool) ** 2
        layers = []
        for _ in range(depth):
            layers += [nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(0.1)]
            d_in = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d_in, classes)

    def forward(self, x):
        x = F.avg_pool2d(x, self.pool).flatten(1)
        return self.head(self.body(x))


class DWNet(nn.Module):
    """Depthwise-separable blocks (MobileNet-like)."""

    def __init__(self, classes, width, depth):
        super().__init__()
        layers = [nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6()]
        c = width
        for d in range(depth):
            out = min(c * 2, 256) if d % 2 == 1 else c
            stride = 2 if d % 2 == 1 else 1
            layers += [
                nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU6(),
                nn.Conv2d(c, out, 1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU6(),
            ]
            c = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


class ViT(nn.Module):
    def __init__(self, classes, dim, depth, heads, size, patch=8):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        n = (size // patch) ** 2
        self.pos = nn.Parameter(torch.randn(1, n, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(t)).mean(1))


def build_model(spec, classes, size):
    a = spec["arch"]
    if a == "cnn":
        return ConvNet(classes, spec["width"], spec["depth"], spec["double"], spec["bn"], spec["act"])
    if a == "resnet":
        return ResNet(classes, spec["width"], spec["depth"], spec["blocks"])
    if a == "mlp":
        return MLP(classes, spec["width"], spec["depth"], size)
    if a == "dwnet":
        return DWNet(classes, spec["width"], spec["depth"])
    if a == "vit":
        return ViT(classes, spec["width"], spec["depth"], 4, size)
    raise ValueError(a)


def sample_arch(rng):
    """A random architecture spec (the hub's variety of families, widths and depths)."""
    a = rng.choice(["cnn", "cnn", "resnet", "dwnet", "mlp", "vit"])
    if a == "cnn":
        return {"arch": "cnn", "width": int(rng.choice([12, 16, 24])), "depth": int(rng.integers(2, 4)),
                "double": bool(rng.random() < 0.3), "bn": bool(rng.random() < 0.8),
                "act": str(rng.choice(["relu", "gelu", "silu"]))}
    if a == "resnet":
        return {"arch": "resnet", "width": int(rng.choice([12, 16])), "depth": int(rng.integers(2, 4)),
                "blocks": 1}
    if a == "dwnet":
        return {"arch": "dwnet", "width": int(rng.choice([16, 24, 32])), "depth": int(rng.integers(3, 6))}
    if a == "mlp":
        return {"arch": "mlp", "width": int(rng.choice([256, 512])), "depth": int(rng.integers(1, 4))}
    return {"arch": "vit", "width": int(rng.choice([48, 64])), "depth": int(rng.integers(2, 4))}
