"""NAS-Bench-201 (Dong and Yang, 2020): a stack of densely connected 4-node cells.

Labels follow NNI 3.0: every cell of one space shares the decisions ``cell/{j}_{i}`` (the operation
on the edge from node ``j`` to node ``i``), whose values are the operation names in ``PRIMITIVES``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from nasflow.mutable import label_scope
from nasflow.nn import LayerChoice, ModelSpace

from .ops import FactorizedReduce, Pooling, ReLUConvBN, Zero

__all__ = ["NasBench201", "NasBench201Cell", "PRIMITIVES", "OPS_WITH_STRIDE"]

OpFactory = Callable[[int, int], nn.Module]

PRIMITIVES = ["none", "skip_connect", "conv_1x1", "conv_3x3", "avg_pool_3x3"]

OPS_WITH_STRIDE: dict[str, Callable[[int, int, int], nn.Module]] = {
    "none": lambda c_in, c_out, stride: Zero(c_in, c_out, stride),
    "avg_pool_3x3": lambda c_in, c_out, stride: Pooling(c_in, c_out, stride, "avg"),
    "max_pool_3x3": lambda c_in, c_out, stride: Pooling(c_in, c_out, stride, "max"),
    "conv_3x3": lambda c_in, c_out, stride: ReLUConvBN(c_in, c_out, 3, stride, 1),
    "conv_1x1": lambda c_in, c_out, stride: ReLUConvBN(c_in, c_out, 1, stride, 0),
    "skip_connect": lambda c_in, c_out, stride: (
        nn.Identity() if stride == 1 and c_in == c_out else FactorizedReduce(c_in, c_out, stride)),
}


class NasBench201Cell(nn.Module):
    """A DAG of ``num_tensors`` tensors: tensor ``i`` is the sum over ``j < i`` of ``op_ji(tensor j)``.

    ``op_candidates`` maps names (or, as a list, indices) to factories ``(in_features, out_features)
    -> module``. Each edge is a ``LayerChoice`` labelled ``{j}_{i}`` in the cell's ``label_scope(label)``
    (``cell/0_1`` for ``label='cell'``); cells that share a label share their choices.
    """

    def __init__(self, op_candidates: dict[str, OpFactory] | list[OpFactory],
                 in_features: int, out_features: int, num_tensors: int = 4, label: str | None = None) -> None:
        super().__init__()
        if isinstance(op_candidates, list):
            op_candidates = OrderedDict((str(i), f) for i, f in enumerate(op_candidates))
        if not op_candidates:
            raise ValueError("NasBench201Cell needs at least one operation candidate.")
        if num_tensors < 2:
            raise ValueError(f"NasBench201Cell: num_tensors must be at least 2 (input and output), got {num_tensors}.")
        self.in_features, self.out_features, self.num_tensors = in_features, out_features, num_tensors
        self.layers = nn.ModuleList()
        with label_scope(label) as self._scope:
            for i in range(1, num_tensors):
                edges = nn.ModuleList()
                for j in range(i):
                    width = in_features if j == 0 else out_features
                    candidates = OrderedDict((name, make(width, out_features)) for name, make in op_candidates.items())
                    edges.append(LayerChoice(candidates, label=f"{j}_{i}"))
                self.layers.append(edges)

    @property
    def label(self) -> str:
        return self._scope.name

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        tensors = [inputs]
        for edges in self.layers:
            node = edges[0](tensors[0])
            for j in range(1, len(edges)):
                node = node + edges[j](tensors[j])
            tensors.append(node)
        return tensors[-1]


class ResNetBasicBlock(nn.Module):
    """The fixed reduction block between NAS-Bench-201's stacks."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ResNetBasicBlock: stride must be 1 or 2, got {stride}.")
        self.conv_a = ReLUConvBN(in_channels, out_channels, 3, stride, 1)
        self.conv_b = ReLUConvBN(out_channels, out_channels, 3, 1, 1)
        self.downsample: nn.Module | None = None
        if stride == 2:
            self.downsample = nn.Sequential(nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
                                            nn.Conv2d(in_channels, out_channels, 1, bias=False))
        elif in_channels != out_channels:
            self.downsample = ReLUConvBN(in_channels, out_channels, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return residual + self.conv_b(self.conv_a(x))


class NasBench201(ModelSpace):
    """The NAS-Bench-201 space: stem, three stacks of ``num_modules_per_stack`` cells (all sharing
    the label ``cell``) separated by residual reduction blocks, then global pooling and a classifier.

    15,625 architectures (5 operations on 6 edges); ``nasflow.benchmark`` looks their CIFAR and
    ImageNet-16-120 accuracies up offline.
    """

    def __init__(self, stem_out_channels: int = 16, num_modules_per_stack: int = 5, num_labels: int = 10) -> None:
        super().__init__()
        c, n = stem_out_channels, num_modules_per_stack
        self.channels, self.num_modules, self.num_labels = c, n, num_labels
        self.stem = nn.Sequential(nn.Conv2d(3, c, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(c))
        channels = [c] * n + [c * 2] + [c * 2] * n + [c * 4] + [c * 4] * n
        reductions = [False] * n + [True] + [False] * n + [True] + [False] * n
        ops = OrderedDict((name, _stride_one(name)) for name in PRIMITIVES)
        self.cells = nn.ModuleList()
        previous = c
        for width, reduction in zip(channels, reductions, strict=True):
            cell: nn.Module = (ResNetBasicBlock(previous, width, 2) if reduction
                               else NasBench201Cell(ops, previous, width, label="cell"))
            self.cells.append(cell)
            previous = width
        self.lastact = nn.Sequential(nn.BatchNorm2d(previous), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(previous, num_labels)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        feature = self.stem(inputs)
        for cell in self.cells:
            feature = cell(feature)
        out = self.global_pooling(self.lastact(feature))
        return self.classifier(torch.flatten(out, 1))


def _stride_one(name: str) -> Callable[[int, int], nn.Module]:
    make = OPS_WITH_STRIDE[name]
    return lambda c_in, c_out: make(c_in, c_out, 1)
