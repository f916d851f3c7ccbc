"""NAS-Bench-101 (Ying et al., 2019): stacks of one searched cell, a DAG of at most 7 vertices and
9 edges whose interior vertices are a 3x3 convolution, a 1x1 convolution or a 3x3 max pool.

Labels follow NNI 3.0 (cells labelled ``cell`` share them): ``cell/num_nodes``, ``cell/op{i}``,
``cell/input{i}`` (the set of earlier vertices feeding vertex ``i``) and the constraint
``cell/final`` (edges within the limit, input connected to output). As in NNI, the cell exists only
as a frozen module: its widths follow the chosen graph, so a model is built from its sample and the
graph format (one graph for all samples) refuses the space; the simplified and raw formats work.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from nasflow.mutable import (
    Categorical,
    CategoricalMultiple,
    Constraint,
    ConstraintViolation,
    LabeledMutable,
    Sample,
    SampleValidationError,
    auto_label,
    label_scope,
)
from nasflow.mutable.base import IsLeaf
from nasflow.nn import ModelSpace, MutableModule
from nasflow.nn.base import current_sample

__all__ = ["NasBench101", "NasBench101Cell", "NasBench101CellConstraint"]

Matrix = list[list[int]]


def _connections(inputs: list[list[int]], num_nodes: int) -> Matrix:
    """Adjacency matrix (``m[src][dst]``) from each vertex's list of input vertices."""
    matrix = [[0] * num_nodes for _ in range(num_nodes)]
    for dst, sources in enumerate(inputs, start=1):
        for src in sources:
            matrix[src][dst] = 1
    return matrix


def prune(matrix: Matrix, ops: list[Any]) -> tuple[Matrix, list[Any]]:
    """Drop vertices not on a path from input to output (NAS-Bench-101's canonical form)."""
    n = len(matrix)
    forward, backward = {0}, {n - 1}
    for v in range(n):
        if v in forward:
            forward.update(d for d in range(n) if matrix[v][d])
    for v in range(n - 1, -1, -1):
        if v in backward:
            backward.update(s for s in range(n) if matrix[s][v])
    keep = sorted(forward & backward)
    if 0 not in keep or n - 1 not in keep:
        raise ConstraintViolation("the cell's input is not connected to its output")
    return [[matrix[s][d] for d in keep] for s in keep], [ops[v] for v in keep]


def vertex_channels(in_channels: int, out_channels: int, matrix: Matrix) -> list[int]:
    """NAS-Bench-101's widths: the output's channels are split among the vertices feeding it (the
    first ones get one more when it does not divide), and an interior vertex is as wide as the
    widest vertex it feeds."""
    n = len(matrix)
    channels = [0] * n
    channels[0], channels[n - 1] = in_channels, out_channels
    if n == 2:
        return channels
    fan_in = sum(matrix[v][n - 1] for v in range(1, n))
    base, extra = divmod(out_channels, fan_in)
    for v in range(1, n - 1):
        if matrix[v][n - 1]:
            channels[v] = base + (1 if extra > 0 else 0)
            extra -= 1
    for v in range(n - 3, 0, -1):
        if not matrix[v][n - 1]:
            channels[v] = max([channels[v]] + [channels[d] for d in range(v + 1, n - 1) if matrix[v][d]])
    return channels


class NasBench101CellConstraint(Constraint):
    """``{cell}/final``: at most ``max_num_edges`` edges among the used vertices, and an input
    connected to the output."""

    def __init__(self, max_num_edges: int, num_nodes: Categorical, operations: list[Categorical],
                 inputs: list[CategoricalMultiple], label: str) -> None:
        self.label, self.max_num_edges = label, max_num_edges
        self.num_nodes, self.operations, self.inputs = num_nodes, operations, inputs

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterator[LabeledMutable]:
        yield from self.num_nodes.leaf_mutables(is_leaf)
        for mutable in [*self.operations, *self.inputs]:
            yield from mutable.leaf_mutables(is_leaf)
        yield self

    def equals(self, other: Any) -> bool:
        return (isinstance(other, NasBench101CellConstraint) and other.label == self.label
                and other.max_num_edges == self.max_num_edges and other.num_nodes.equals(self.num_nodes)
                and len(other.operations) == len(self.operations))

    def spec(self, sample: Sample) -> tuple[Matrix, list[str]]:
        """The pruned adjacency matrix and operations (``IN`` ... ``OUT``) of the sample's cell."""
        num_nodes = self.num_nodes.freeze(sample)
        inputs = [list(inp.freeze(sample)) for inp in self.inputs[: num_nodes - 1]]
        edges = sum(len(i) for i in inputs)
        if edges > self.max_num_edges:
            raise ConstraintViolation(f"{self.label}: {edges} edges, more than max_num_edges={self.max_num_edges}")
        ops = ["IN", *(op.freeze(sample) for op in self.operations[: num_nodes - 2]), "OUT"]
        try:
            return prune(_connections(inputs, num_nodes), ops)
        except ConstraintViolation as err:
            raise ConstraintViolation(f"{self.label}: {err}") from None

    def check_contains(self, sample: Sample) -> SampleValidationError | None:
        try:
            self.spec(sample)
        except SampleValidationError as err:
            return err
        return None

    def __repr__(self) -> str:
        return f"NasBench101CellConstraint(max_num_edges={self.max_num_edges}, label={self.label!r})"


class _FixedCell(nn.Module):
    """One frozen NAS-Bench-101 cell: vertex ``t`` applies its operation to the sum of its inputs
    (the cell's input through a projection); the output concatenates the vertices feeding it, plus
    the projected input when it is connected."""

    def __init__(self, matrix: Matrix, ops: list[Callable[[int], nn.Module]], in_features: int,
                 out_features: int, projection: Callable[[int, int], nn.Module]) -> None:
        super().__init__()
        self.matrix, self.num_nodes = matrix, len(matrix)
        self.hidden = vertex_channels(in_features, out_features, matrix)
        self.projections = nn.ModuleList([nn.Identity()] + [projection(in_features, self.hidden[i])
                                                            for i in range(1, self.num_nodes)])
        self.ops = nn.ModuleList([nn.Identity()] + [ops[i](self.hidden[i]) for i in range(1, self.num_nodes - 1)])

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        n, m = self.num_nodes, self.matrix
        tensors = [inputs]
        for t in range(1, n - 1):
            summands = [tensors[s][:, : self.hidden[t]] for s in range(1, t) if m[s][t]]
            if m[0][t]:
                summands.append(self.projections[t](inputs))
            total = summands[0]
            for tensor in summands[1:]:
                total = total + tensor
            tensors.append(self.ops[t](total))
        feeding = [s for s in range(1, n - 1) if m[s][n - 1]]
        if not feeding:  # only the input feeds the output
            return self.projections[n - 1](inputs)
        out = torch.cat([tensors[s] for s in feeding], 1) if len(feeding) > 1 else tensors[feeding[0]]
        if m[0][n - 1]:
            out = out + self.projections[n - 1](inputs)
        return out


class NasBench101Cell(MutableModule):
    """The searched cell. ``op_candidates`` maps names to ``factory(channels)``; ``projection(in,
    out)`` adapts the cell's input to a vertex's width. Built inside ``model_context`` (or frozen) it
    is the plain frozen cell; as part of a space it only holds the decisions (no forward)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        sample = current_sample()
        if sample is None:
            return super().__new__(cls)
        space = super().__new__(cls)
        cls.__init__(space, *args, **kwargs)
        return space.freeze_shallow(sample)

    def __init__(self, op_candidates: dict[str, Callable[[int], nn.Module]] | list[Callable[[int], nn.Module]],
                 in_features: int, out_features: int, projection: Callable[[int, int], nn.Module],
                 max_num_nodes: int = 7, max_num_edges: int = 9, label: str | None = None) -> None:
        super().__init__()
        if max_num_nodes < 2:
            raise ValueError(f"NasBench101Cell: max_num_nodes counts input and output, so it must be at least 2, "
                             f"got {max_num_nodes}.")
        self.op_candidates = dict(op_candidates) if isinstance(op_candidates, dict) else \
            {str(i): f for i, f in enumerate(op_candidates)}
        self.in_features, self.out_features, self.projection = in_features, out_features, projection
        self.max_num_nodes, self.max_num_edges = max_num_nodes, max_num_edges
        prior = [2.0 ** i for i in range(2, max_num_nodes + 1)]
        with label_scope(label) as self._scope:
            self.num_nodes = Categorical(list(range(2, max_num_nodes + 1)), weights=[p / sum(prior) for p in prior],
                                         label="num_nodes")
            ops = [Categorical(list(self.op_candidates), label=f"op{i}") for i in range(1, max_num_nodes - 1)]
            inputs = [CategoricalMultiple(list(range(i)), label=f"input{i}") for i in range(1, max_num_nodes)]
            final = auto_label("final")
        self.constraint = NasBench101CellConstraint(max_num_edges, self.num_nodes, ops, inputs, final)
        self.add_mutable(self.constraint)

    @property
    def label(self) -> str:
        return self._scope.name

    def freeze_shallow(self, sample: Sample) -> nn.Module:
        matrix, ops = self.constraint.spec(sample)
        factories = [self.op_candidates[op] if op in self.op_candidates else None for op in ops]
        return _FixedCell(matrix, factories, self.in_features, self.out_features, self.projection)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(f"NasBench101Cell {self.label!r} is a search space, not a network: freeze it with a sample "
                           "(space.freeze(sample)) or build it inside model_context(sample). Its widths follow the "
                           "sample, which one graph for all samples cannot represent: use the simplified or raw "
                           "format.")


class ConvBNReLU(nn.Sequential):
    """Convolution (truncated-normal initialized, as NAS-Bench-101), batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, bn_eps: float = 1e-5,
                 bn_momentum: float = 0.003) -> None:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2, bias=False)
        std = math.sqrt(1.0 / (kernel_size * kernel_size * in_channels))
        nn.init.trunc_normal_(conv.weight, 0.0, std, -2 * std, 2 * std)
        super().__init__(conv, nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum), nn.ReLU(inplace=True))


class NasBench101(ModelSpace):
    """A 3x3 stem, then ``num_stacks`` stacks of ``num_modules_per_stack`` cells (2x wider and half
    the resolution from one stack to the next), global pooling and a classifier."""

    def __init__(self, stem_out_channels: int = 128, num_stacks: int = 3, num_modules_per_stack: int = 3,
                 max_num_vertices: int = 7, max_num_edges: int = 9, num_labels: int = 10, bn_eps: float = 1e-5,
                 bn_momentum: float = 0.003) -> None:
        super().__init__()

        def conv(kernel: int) -> Callable[[int], nn.Module]:
            return lambda c: ConvBNReLU(c, c, kernel, bn_eps, bn_momentum)

        ops: dict[str, Callable[[int], nn.Module]] = {
            "conv3x3-bn-relu": conv(3), "conv1x1-bn-relu": conv(1), "maxpool3x3": lambda c: nn.MaxPool2d(3, 1, 1)}
        projection = lambda c_in, c_out: ConvBNReLU(c_in, c_out, 1, bn_eps, bn_momentum)  # noqa: E731
        self.stem_conv = ConvBNReLU(3, stem_out_channels, 3, bn_eps, bn_momentum)
        layers: list[nn.Module] = []
        in_channels = out_channels = stem_out_channels
        for stack in range(num_stacks):
            if stack > 0:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                out_channels *= 2
            for _ in range(num_modules_per_stack):
                layers.append(NasBench101Cell(ops, in_channels, out_channels, projection, max_num_vertices,
                                              max_num_edges, label="cell"))
                in_channels = out_channels
        self.features = nn.ModuleList(layers)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(out_channels, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem_conv(x)
        for layer in self.features:
            out = layer(out)
        return self.classifier(torch.flatten(self.gap(out), 1))
