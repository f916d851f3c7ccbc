"""Model spaces for the graph-format tests: each is converted and compared with the simplified format."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import nasflow
from nasflow.nn import (
    Cell,
    InputChoice,
    LayerChoice,
    ModelSpace,
    MutableBatchNorm2d,
    MutableConv2d,
    MutableLinear,
    ParametrizedModule,
    Repeat,
)


# ---- MLP --------------------------------------------------------------------------------------
class MLPSpace(ModelSpace):
    def __init__(self, in_features: int = 8, classes: int = 3) -> None:
        super().__init__()
        hidden = nasflow.choice("mlp/hidden", [8, 12, 16])
        self.fc1 = MutableLinear(in_features, hidden)
        self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "gelu": nn.GELU()}, label="mlp/act")
        self.drop = nn.Dropout(0.1)
        self.fc2 = MutableLinear(hidden, classes)
        self.proj = nn.Linear(in_features, classes)
        self.skip = InputChoice(2, 1, label="mlp/skip")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc2(self.drop(self.act(self.fc1(x))))
        return self.skip([out, self.proj(x)])


# ---- CNN with residual additions and concatenations -------------------------------------------
class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class CNNSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBNReLU(3, 8, 3)
        self.b1 = LayerChoice([ConvBNReLU(8, 8, 3), ConvBNReLU(8, 8, 5), nn.Identity()], label="cnn/b1")
        self.b2 = LayerChoice([ConvBNReLU(8, 8, 3), nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8))],
                              label="cnn/b2")
        self.merge = InputChoice(3, 2, reduction="concat", label="cnn/merge")
        self.mix = InputChoice(3, 2, reduction="mean", label="cnn/mix")
        self.fc = nn.Linear(16 + 8 + 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        r = s + self.b1(s)
        c = self.b2(r)
        m = self.merge([s, r, c])
        extra = self.mix([s, r, c])
        y = torch.cat((m, c, extra), 1)
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


# ---- ResNet-style with Repeat ------------------------------------------------------------------
class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = LayerChoice([nn.Conv2d(channels, channels, 3, padding=1),
                                 nn.Conv2d(channels, channels, 5, padding=2)])
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn(self.conv(x)))


class ResNetSpace(ModelSpace, label_prefix="resnet"):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.stage1 = Repeat(lambda i: ResBlock(8), (1, 3), label="stage1")
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.stage2 = Repeat(lambda i: ResBlock(16), nasflow.choice("depth2", [0, 1, 2]))
        self.stage3 = Repeat([nn.Conv2d(16, 16, 1), nn.ReLU()], 2, label="stage3")
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.down(self.stage1(self.stem(x)))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ---- DARTS-style Cell --------------------------------------------------------------------------
class SepConv(nn.Module):
    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class Preprocess(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(channels, channels, 1) for _ in range(2)])

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.convs[0](inputs[0]), self.convs[1](inputs[1])]


class MeanPost(nn.Module):
    def forward(self, output: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
        return output.mean(1, keepdim=True) + inputs[0].mean(1, keepdim=True)


def darts_ops(channels: int) -> dict:
    return {
        "sep3": lambda node, op: SepConv(channels, 3),
        "sep5": lambda: SepConv(channels, 5),
        "max": lambda: nn.MaxPool2d(3, 1, 1),
        "avg": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
        "skip": nn.Identity(),
        "zero": Zero(),
    }


class DartsSpace(ModelSpace):
    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.cell1 = Cell(darts_ops(channels), num_nodes=3, num_ops_per_node=2, num_predecessors=2,
                          preprocessor=Preprocess(channels), label="darts/cell1")
        self.reduce = nn.Conv2d(3 * channels, channels, 1)
        self.cell2 = Cell(darts_ops(channels), num_nodes=2, num_ops_per_node=1, num_predecessors=2,
                          merge_op="loose_end", postprocessor=MeanPost(), label="darts/cell2")
        self.fc = nn.Linear(1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = self.stem(x)
        s1 = self.reduce(self.cell1([s0, s0]))
        out = self.cell2(s0, s1)
        return self.fc(out.mean(dim=(2, 3)))


# ---- NAS-Bench-201-style -----------------------------------------------------------------------
class ReLUConvBN(nn.Module):
    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False),
                                nn.BatchNorm2d(channels, affine=False, track_running_stats=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class NB201Cell(nn.Module):
    def __init__(self, channels: int, prefix: str) -> None:
        super().__init__()
        self.edges = nn.ModuleDict()
        for j in range(1, 4):
            for i in range(j):
                self.edges[f"{j}_{i}"] = LayerChoice({
                    "none": Zero(), "skip": nn.Identity(), "conv1x1": ReLUConvBN(channels, 1),
                    "conv3x3": ReLUConvBN(channels, 3), "avg": nn.AvgPool2d(3, 1, 1, count_include_pad=False),
                }, label=f"{prefix}/{j}_{i}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, 4):
            nodes.append(sum(self.edges[f"{j}_{i}"](nodes[i]) for i in range(j)))
        return nodes[-1]


class NB201Space(ModelSpace):
    """Both cells share one architecture (same labels), as in NAS-Bench-201."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
        self.cells = nn.Sequential(NB201Cell(4, "nb201"), NB201Cell(4, "nb201"))
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.cells(self.stem(x)).mean(dim=[2, 3]))


# ---- MobileNet-style blocks with value choices --------------------------------------------------
class MBBlock(nn.Module):
    def __init__(self, cin: object, cout: object, expand: object, kernel: object, stride: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = MutableConv2d(cin, hidden, 1, bias=False)
        self.bn1 = MutableBatchNorm2d(hidden)
        self.depthwise = MutableConv2d(hidden, hidden, kernel, stride, padding=kernel // 2, groups=hidden, bias=False)
        self.bn2 = MutableBatchNorm2d(hidden)
        self.project = MutableConv2d(hidden, cout, 1, bias=False)
        self.bn3 = MutableBatchNorm2d(cout)
        self.residual = stride == 1 and cin is cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self.bn1(self.expand(x)))
        out = F.relu6(self.bn2(self.depthwise(out)))
        out = self.bn3(self.project(out))
        return x + out if self.residual else out


class MobileNetSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        width = nasflow.choice("mb/width", [8, 12])
        self.stem = MutableConv2d(3, width, 3, padding=1)
        self.b1 = MBBlock(width, width, nasflow.choice("mb/expand1", [1, 2, 3]), nasflow.choice("mb/k1", [3, 5]), 1)
        self.b2 = MBBlock(width, 16, nasflow.choice("mb/expand2", [2, 4]), nasflow.choice("mb/k2", [3, 5, 7]), 2)
        self.classifier = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b2(self.b1(F.relu(self.stem(x))))
        return self.classifier(x.mean([2, 3]))


# ---- functional calls, tensor methods, tuple / dict outputs, keyword arguments ------------------
class Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.scale = nn.Parameter(torch.full((1,), 0.5))
        self.register_buffer("bias", torch.linspace(-1, 1, dim))

    def forward(self, x: torch.Tensor, *, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        att = torch.softmax(q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) * temperature), dim=-1)
        return (att @ v) * self.scale + self.bias, att


class FunctionalSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 8)
        self.att = Attention(8)
        self.norm = LayerChoice([nn.LayerNorm(8), nn.Identity()], label="fn/norm")
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = F.gelu(self.embed(x))
        y, att = self.att(h, temperature=2.0)
        y = self.norm(y)
        flat = y.permute(0, 2, 1).contiguous().view(x.size(0), -1)
        stats = torch.sum(flat, dim=1, keepdim=True)
        return {"logits": self.out(y).mean(dim=1) + stats, "att": att[:, 0, 1:], "shape": x.shape[-1] * 2}


# ---- a basic unit whose forward has a Python loop over a tensor ----------------------------------
class RowScan(ParametrizedModule):
    def __init__(self, dim: int, decay: float) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, dim)
        self.decay = decay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, state = [], torch.zeros_like(x[0])
        for row in x:
            state = state * self.decay + self.lin(row)
            rows.append(state)
        return torch.stack(rows)


class LoopSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.scan = RowScan(4, nasflow.choice("loop/decay", [0.5, 0.9]))
        self.head = LayerChoice([nn.Linear(4, 2), nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))],
                                label="loop/head")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.scan(x))


CORPUS = {
    "mlp": (MLPSpace, lambda: torch.randn(3, 8)),
    "cnn": (CNNSpace, lambda: torch.randn(2, 3, 8, 8)),
    "resnet": (ResNetSpace, lambda: torch.randn(2, 3, 8, 8)),
    "darts": (DartsSpace, lambda: torch.randn(2, 3, 6, 6)),
    "nb201": (NB201Space, lambda: torch.randn(2, 3, 6, 6)),
    "mobilenet": (MobileNetSpace, lambda: torch.randn(2, 3, 8, 8)),
    "functional": (FunctionalSpace, lambda: torch.randn(2, 5, 6)),
    "loop": (LoopSpace, lambda: torch.randn(5, 4)),
}
