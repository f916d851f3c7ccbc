"""Model spaces written as NNI users write them, one per class of code the graph format must keep exact.

Each entry of ``SPACES``: (space class, input maker, keyword arguments for ``from_model``). The tests
compare every space's graph-format models with its simplified-format models under the same weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import nasflow
from nasflow.nn import InputChoice, LayerChoice, ModelSpace, MutableConv2d, MutableLinear, ParametrizedModule, Repeat


# ---- 1. buffers used through a method call or an index ------------------------------------------
class CausalAttention(nn.Module):
    """Causal self-attention: the mask buffer is sliced to the input length."""

    def __init__(self, dim: int, max_len: int = 16) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.register_buffer("mask", torch.tril(torch.ones(max_len, max_len)))
        self.register_buffer("stats", torch.linspace(-1.0, 1.0, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        att = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        att = att.masked_fill(self.mask[:t, :t] == 0, float("-inf"))
        return torch.softmax(att, dim=-1) @ v + self.stats.mean() + self.stats[0]


class BufferSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.att = LayerChoice([CausalAttention(8), nn.Identity()], label="buf/att")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.att(self.embed(x))


# ---- 2. a large non-persistent buffer (a sinusoidal position table) ------------------------------
def sinusoids(length: int, dim: int) -> torch.Tensor:
    position = torch.arange(length).unsqueeze(1)
    scale = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * scale)
    table[:, 1::2] = torch.cos(position * scale)
    return table


class PositionalSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("table", sinusoids(640, 8) * 3.0, persistent=False)  # 5120 elements
        self.pos = nn.Parameter(torch.randn(1, 16, 8) * 0.1)
        self.embed = MutableLinear(4, 8)
        self.mix = LayerChoice([nn.Linear(8, 8), nn.Sequential(nn.Linear(8, 8), nn.GELU())], label="pos/mix")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.table[: x.size(1)] + self.pos[:, : x.shape[1]]
        return self.mix(h)


# ---- 3 and 4. Repeat with choices in its blocks; a list of factories -----------------------------
class ChoiceBlock(nn.Module):
    def __init__(self, dim: int, index: int) -> None:
        super().__init__()
        self.op = LayerChoice([nn.Linear(dim, dim), nn.Sequential(nn.Linear(dim, dim), nn.Tanh())],
                              label=f"rep/op{index}")
        self.width = MutableLinear(dim, nasflow.choice(f"rep/width{index}", [dim, 2 * dim]))
        self.back = MutableLinear(nasflow.choice(f"rep/width{index}", [dim, 2 * dim]), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.back(F.relu(self.width(self.op(x))))


def block0(index: int) -> nn.Module:
    return nn.Sequential(nn.Linear(6, 6), nn.ReLU())


def block1(index: int) -> nn.Module:
    return LayerChoice([nn.Linear(6, 6), nn.Tanh()], label=f"rep/list{index}")


def block2(index: int) -> nn.Module:
    return nn.Linear(6, 6, bias=index == 2)


class RepeatSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(3, 6)
        self.blocks = Repeat(lambda i: ChoiceBlock(6, i), (1, 3), label="rep/depth")
        self.direct = Repeat(lambda i: LayerChoice([nn.Linear(6, 6), nn.ReLU()], label=f"rep/direct{i}"),
                             nasflow.choice("rep/ddepth", [0, 1, 2]))
        self.listed = Repeat([block0, block1, block2], (1, 3), label="rep/listed")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.listed(self.direct(self.blocks(self.stem(x))))


# ---- 5. optional forward arguments ---------------------------------------------------------------
class Fuse(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, *, scale: float = 1.0) -> torch.Tensor:
        out = self.proj(x) * scale
        if y is not None:
            out = out + y
        return out


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor, mode: str = "sum", extra: torch.Tensor | None = None,
                return_both: bool = False) -> Any:
        h = self.fc(x)
        if extra is not None:
            h = h + extra
        out = h.sum(-1, keepdim=True) if mode == "sum" else h.mean(-1, keepdim=True)
        return (out, h) if return_both else out


class OptionalArgSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.alone = Fuse()
        self.paired = Fuse()
        self.head = LayerChoice([Head(), Head()], label="opt/head")
        self.act = LayerChoice([nn.ReLU(), nn.Sigmoid()], label="opt/act")

    def forward(self, x: torch.Tensor, *, temperature: float = 2.0) -> torch.Tensor:
        a = self.alone(x)                               # y left out: the `y is None` branch
        b = self.paired(x, a, scale=0.5)                # y given
        pooled, h = self.head(b, "mean", None, return_both=True)  # a string, None and a flag it branches on
        return self.act(a + h + pooled) / temperature   # optional, but only used as a number


class OptionalInputSpace(ModelSpace):
    """The space's own forward branches on an optional argument: conversion needs to know the call."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = MutableLinear(5, nasflow.choice("opt2/width", [3, 5]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.fc(x)
        if mask is not None:
            out = out * mask
        return out


# ---- 6. data-dependent code in the space's own forward -------------------------------------------
class DataDependentSliceSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.fc = LayerChoice([nn.Linear(4, 4), nn.Identity()], label="dd/fc")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = int((x[0] > 0).sum())
        return self.fc(x)[:, :keep]


# ---- 7. lazy modules --------------------------------------------------------------------------------
class LazySpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.LazyConv2d(6, 3, padding=1)
        self.bn = nn.LazyBatchNorm2d()
        self.head = LayerChoice([nn.LazyLinear(4), nn.Sequential(nn.Flatten(), nn.LazyLinear(4))], label="lazy/head")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.conv(x)).mean(dim=(2, 3)))


# ---- 8. in-place operators on aliases ---------------------------------------------------------------
class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.fc(x)
        y = x
        y += 1                       # updates x too
        z = x.clone()
        z[:, 0] = -z[:, 1]           # setitem
        z.mul_(2).add_(x)            # in-place methods
        w = F.relu(z, inplace=True)  # and a function's inplace flag
        count = 3
        count += 1                   # a Python number: rebinding, not an update
        return x * count, w


class InPlaceSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.body = InPlace()
        self.mix = InputChoice(3, 2, reduction="mean", label="inplace/mix")
        self.out = LayerChoice([nn.Linear(4, 2), nn.Linear(4, 2, bias=False)], label="inplace/out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, w = self.body(x)
        h = a
        h -= w                       # in the space's own forward too
        m = self.mix([a, w, x])      # frozen into plain additions, which must still run before...
        w.add_(3)                    # ... this update of one of their inputs
        return self.out(a) + m.sum() + w.sum()


# ---- 9. shape arithmetic ---------------------------------------------------------------------------
class ShapeSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.fc = MutableLinear(6, nasflow.choice("shape/width", [6, 8]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)                                       # (batch, length, width)
        assert h.dim() == 3 and h.shape[1] == x.shape[1], "a sequence"  # kept as a check
        grid = torch.zeros(x.shape[0], h.shape[-1]) + 0.5    # sizes from two tensors
        count = torch.tensor(x.shape[1])
        ranks = h.unsqueeze(len(h.shape))                    # len() of a shape
        half = h[..., : h.size(-1) // 2]                     # x.shape[-1] arithmetic
        positions = torch.arange(x.size(1), dtype=h.dtype)   # arange over the input length
        pieces = sum(piece.mean() for piece in h.chunk(2, dim=1))  # a loop over chunks of known number
        out = ranks.squeeze(-1).sum(1) * grid / count + half.mean() + positions.sum() + pieces
        return out * torch.randn(1).abs().add(1)             # a fresh random tensor at every call


# ---- beyond the reported classes --------------------------------------------------------------------
class Mixer(nn.Module):
    """BatchNorm, torch.where, ModuleDict by constant key, getattr of submodules, interpolate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.heads = nn.ModuleDict({"up": nn.Conv2d(channels, channels, 1), "down": nn.Conv2d(channels, channels, 3)})
        for i in range(2):
            setattr(self, f"layer{i}", nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.bn(x)
        for i in range(2):
            h = getattr(self, f"layer{i}")(h)
        h = torch.where(h > 0, h, 0.1 * h)
        small = self.heads["down"](h)
        up = F.interpolate(small, size=h.shape[-2:], mode="bilinear", align_corners=False)
        doubled = F.interpolate(self.heads["up"](h), scale_factor=2.0, mode="nearest")
        return {"main": h + up, "aux": doubled.mean(dim=(2, 3))}


class VisionSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        width = nasflow.choice("vis/width", [4, 6])
        self.stem = MutableConv2d(3, width, 3, padding=1)
        self.mixer = LayerChoice({"mix": Mixer(4), "plain": PlainHead(4)}, label="vis/mixer")
        self.proj = MutableConv2d(width, 4, 1)
        self.skip = InputChoice(2, 1, label="vis/skip")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.proj(F.relu(self.stem(x)))
        out = self.mixer(h)
        main = self.skip([out["main"], h])
        return main.flatten(1), out["aux"]


class PlainHead(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.conv(x)
        return {"main": h, "aux": h.amax(dim=(2, 3))}


class TiedWeights(nn.Module):
    """A basic unit's weight used directly next to the module (weight tying, as language models do)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 6)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens) @ self.embed.weight.t()


class Scaled(ParametrizedModule):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor if x.sum() > -1e9 else x  # data-dependent, fine in a basic unit


class TokenSpace(ModelSpace):
    """Keyword-only arguments, integer inputs, a basic unit with a value choice, weight tying."""

    def __init__(self) -> None:
        super().__init__()
        self.tied = TiedWeights()
        self.scale = Scaled(nasflow.choice("tok/factor", [0.5, 2.0]))
        self.norm = LayerChoice([nn.LayerNorm(10), nn.Identity()], label="tok/norm")

    def forward(self, tokens: torch.Tensor, *, shift: float = 0.25) -> torch.Tensor:
        logits = self.tied(tokens) + shift
        return self.norm(self.scale(logits))


SPACES = {
    "buffers": (BufferSpace, lambda: torch.randn(2, 7, 4), {}),
    "positional": (PositionalSpace, lambda: torch.randn(2, 9, 4), {}),
    "repeat": (RepeatSpace, lambda: torch.randn(3, 3), {}),
    "optional_args": (OptionalArgSpace, lambda: torch.randn(2, 5), {}),
    "lazy": (LazySpace, lambda: torch.randn(2, 3, 5, 5), {"dummy_input": torch.randn(2, 3, 5, 5)}),
    "inplace": (InPlaceSpace, lambda: torch.randn(3, 4), {}),
    "shapes": (ShapeSpace, lambda: torch.randn(2, 5, 6), {}),
    "vision": (VisionSpace, lambda: torch.randn(2, 3, 8, 8), {}),
    "tokens": (TokenSpace, lambda: torch.randint(0, 10, (2, 5)), {}),
}
