"""The NASNet family of cell spaces, unified as in "On Network Design Spaces for Visual Recognition"
(Radosavovic et al., 2019): ``NDS`` and its presets ``NASNet``, ``ENAS``, ``AmoebaNet``, ``PNAS``, ``DARTS``.

Labels follow NNI 3.0: all normal cells share ``normal/op_{k}_{j}`` / ``normal/input_{k}_{j}``, all
reduction cells ``reduce/...``; ``width`` and ``depth`` when those are searched. As in NNI, a model is
built from its sample (``freeze`` rebuilds): in a reduction cell an operation has stride 2 only when
its chosen input is one of the cell's two inputs, and with ``merge_op='loose_end'`` the next cell's
width depends on which nodes are left unused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

import torch
from torch import nn

import nasflow
from nasflow.mutable import Sample
from nasflow.nn import Cell, ModelSpace, MutableBatchNorm2d, MutableConv2d, MutableLinear, Repeat

from .ops import FactorizedReduce, ReLUConvBN, Zero

__all__ = ["NDS", "NASNet", "ENAS", "AmoebaNet", "PNAS", "DARTS", "OPS", "DropPath"]


def _sequence(*modules: nn.Module) -> nn.Sequential:
    return nn.Sequential(*modules)


def _conv(c: Any, kernel: Any, stride: Any, padding: Any, dilation: int = 1, groups: Any = 1) -> nn.Module:
    return MutableConv2d(c, c, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False)


def _sep_conv(c: Any, kernel: int, stride: int, padding: int, dilation: int = 1, affine: bool = True) -> nn.Module:
    """Two rounds of ReLU, depthwise and pointwise convolutions, batch norm (the first one strided)."""
    return _sequence(
        nn.ReLU(inplace=False), _conv(c, kernel, stride, padding, dilation, c), _conv(c, 1, 1, 0),
        MutableBatchNorm2d(c, affine=affine),
        nn.ReLU(inplace=False), _conv(c, kernel, 1, padding, dilation, c), _conv(c, 1, 1, 0),
        MutableBatchNorm2d(c, affine=affine))


def _dil_conv(c: Any, kernel: int, stride: int, padding: int, dilation: int, affine: bool = True) -> nn.Module:
    return _sequence(nn.ReLU(inplace=False), _conv(c, kernel, stride, padding, dilation, c), _conv(c, 1, 1, 0),
                     MutableBatchNorm2d(c, affine=affine))


def _factorized_conv(c: Any, size: int, stride: int, affine: bool = True) -> nn.Module:
    """A 1 x n then n x 1 convolution pair."""
    return _sequence(nn.ReLU(inplace=False),
                     MutableConv2d(c, c, (1, size), stride=(1, stride), padding=(0, size // 2), bias=False),
                     MutableConv2d(c, c, (size, 1), stride=(stride, 1), padding=(size // 2, 0), bias=False),
                     MutableBatchNorm2d(c, affine=affine))


OPS: dict[str, Callable[[Any, int, bool], nn.Module]] = {
    "none": lambda c, stride, affine: Zero(c, c, stride),
    "avg_pool_2x2": lambda c, stride, affine: nn.AvgPool2d(2, stride=stride, padding=0, count_include_pad=False),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "avg_pool_5x5": lambda c, stride, affine: nn.AvgPool2d(5, stride=stride, padding=2, count_include_pad=False),
    "max_pool_2x2": lambda c, stride, affine: nn.MaxPool2d(2, stride=stride, padding=0),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "max_pool_5x5": lambda c, stride, affine: nn.MaxPool2d(5, stride=stride, padding=2),
    "max_pool_7x7": lambda c, stride, affine: nn.MaxPool2d(7, stride=stride, padding=3),
    "skip_connect": lambda c, stride, affine: nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine=affine),
    "conv_1x1": lambda c, stride, affine: ReLUConvBN(c, c, 1, stride, 0, affine=affine),
    "conv_3x3": lambda c, stride, affine: ReLUConvBN(c, c, 3, stride, 1, affine=affine),
    "sep_conv_3x3": lambda c, stride, affine: _sep_conv(c, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda c, stride, affine: _sep_conv(c, 5, stride, 2, affine=affine),
    "sep_conv_7x7": lambda c, stride, affine: _sep_conv(c, 7, stride, 3, affine=affine),
    "dil_conv_3x3": lambda c, stride, affine: _dil_conv(c, 3, stride, 2, 2, affine=affine),
    "dil_conv_5x5": lambda c, stride, affine: _dil_conv(c, 5, stride, 4, 2, affine=affine),
    "dil_sep_conv_3x3": lambda c, stride, affine: _sep_conv(c, 3, stride, 2, 2, affine=affine),
    "conv_3x1_1x3": lambda c, stride, affine: _factorized_conv(c, 3, stride, affine=affine),
    "conv_7x1_1x7": lambda c, stride, affine: _factorized_conv(c, 7, stride, affine=affine),
}
"""Operation name -> ``factory(channels, stride, affine)``."""


class DropPath(nn.Module):
    """Drops a whole operation's output for a sample with probability ``drop_prob`` while training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob <= 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device).bernoulli_(keep)
        return x / keep * mask


class CellPreprocessor(nn.Module):
    """Brings the two previous cells' outputs to this cell's width (and, after a reduction cell, the
    older one to the same resolution)."""

    def __init__(self, c_pprev: Any, c_prev: Any, c: Any, last_cell_reduce: bool) -> None:
        super().__init__()
        self.pre0 = FactorizedReduce(c_pprev, c) if last_cell_reduce else ReLUConvBN(c_pprev, c, 1, 1, 0)
        self.pre1 = ReLUConvBN(c_prev, c, 1, 1, 0)

    def forward(self, cells: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.pre0(cells[0]), self.pre1(cells[1])]


class CellPostprocessor(nn.Module):
    """A cell outputs ``[previous cell, this cell]``, so cells chain."""

    def forward(self, this_cell: torch.Tensor, previous_cells: list[torch.Tensor]) -> list[torch.Tensor]:
        return [previous_cells[-1], this_cell]


class _CellBuilder:
    """Builds a stage's cells one index at a time, tracking the widths the next cell receives."""

    def __init__(self, op_candidates: Sequence[str], c_pprev: Any, c_prev: Any, c: Any, num_nodes: int,
                 merge_op: str, first_cell_reduce: bool, last_cell_reduce: bool, drop_path_prob: float) -> None:
        self.op_candidates, self.c_pprev, self.c_prev, self.c = list(op_candidates), c_pprev, c_prev, c
        self.num_nodes, self.merge_op, self.drop_path_prob = num_nodes, merge_op, drop_path_prob
        self.first_cell_reduce, self.last_cell_reduce = first_cell_reduce, last_cell_reduce

    def _op(self, node_index: int, op_index: int, input_index: int | None, *, op: str, reduction: bool) -> nn.Module:
        """NNI's factory: in a reduction cell only operations on the cell's two inputs reduce (in the
        space, where the input is not chosen yet, every one of them does)."""
        stride = 2 if reduction and (input_index is None or input_index < 2) else 1
        operation = OPS[op](self.c, stride, True)
        if self.drop_path_prob > 0 and not isinstance(operation, nn.Identity):
            return nn.Sequential(operation, DropPath(self.drop_path_prob))
        return operation

    def __call__(self, index: int) -> Cell:
        reduction = index == 0 and self.first_cell_reduce
        ops = {op: partial(self._op, op=op, reduction=reduction) for op in self.op_candidates}
        cell = Cell(ops, self.num_nodes, 2, 2, self.merge_op,  # type: ignore[arg-type]
                    preprocessor=CellPreprocessor(self.c_pprev, self.c_prev, self.c, self.last_cell_reduce),
                    postprocessor=CellPostprocessor(), label="reduce" if reduction else "normal")
        # with 'loose_end' the concatenation's width follows the chosen inputs (all nodes in the space)
        self.c_pprev, self.c_prev = self.c_prev, self.c * len(cell.output_node_indices)
        self.last_cell_reduce = reduction
        return cell


class AuxiliaryHead(nn.Module):
    """The auxiliary classifier on the last stage's first cell (training only)."""

    def __init__(self, c: Any, num_labels: int, dataset: str) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True), nn.AvgPool2d(5, stride=2 if dataset == "imagenet" else 3, padding=0,
                                                count_include_pad=False),
            MutableConv2d(c, 128, 1, bias=False), MutableBatchNorm2d(128), nn.ReLU(inplace=True),
            MutableConv2d(128, 768, 2, bias=False), MutableBatchNorm2d(768), nn.ReLU(inplace=True))
        self.classifier = MutableLinear(768, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class NDS(ModelSpace):
    """A NASNet-style network: a stem, three stages of cells (every stage after the first opens with
    a reduction cell), global pooling and a classifier.

    ``width`` (or a tuple to search, label ``width``) is the first stage's operation width;
    ``num_cells`` (or a tuple, label ``depth``) the number of cells, split over the stages.
    ``dataset`` picks the stem: ``'cifar'`` keeps the resolution, ``'imagenet'`` divides it by 8.
    ``auxiliary_loss`` adds a head whose logits ``forward`` also returns while training (a fixed
    depth is needed); ``drop_path_prob`` drops operations' outputs while training.
    """

    def __init__(self, op_candidates: Sequence[str], merge_op: Literal["all", "loose_end"] = "all",
                 num_nodes_per_cell: int = 4, width: tuple[int, ...] | int = 16,
                 num_cells: tuple[int, ...] | int = 20, dataset: Literal["cifar", "imagenet"] = "imagenet",
                 auxiliary_loss: bool = False, drop_path_prob: float = 0.0) -> None:
        super().__init__()
        unknown = [op for op in op_candidates if op not in OPS]
        if unknown:
            raise ValueError(f"NDS: unknown operations {unknown}; the operations are {sorted(OPS)}.")
        if dataset not in ("cifar", "imagenet"):
            raise ValueError(f"NDS: dataset must be 'cifar' or 'imagenet', got {dataset!r}.")
        self.op_candidates, self.merge_op, self.num_nodes_per_cell = list(op_candidates), merge_op, num_nodes_per_cell
        self.width, self.dataset, self.auxiliary_loss = width, dataset, auxiliary_loss
        self.num_labels = 10 if dataset == "cifar" else 1000
        self.drop_path_prob = drop_path_prob
        c: Any = nasflow.choice("width", list(width)) if isinstance(width, tuple | list) else width
        depth: Any = nasflow.choice("depth", list(num_cells)) if isinstance(num_cells, tuple | list) else num_cells
        self.num_cells = depth
        if auxiliary_loss and not isinstance(depth, int):
            raise ValueError("NDS: auxiliary_loss needs a fixed num_cells (an int), as the head sits on a fixed cell.")
        per_stage = [(i + 1) * depth // 3 - i * depth // 3 for i in range(3)]

        if dataset == "imagenet":
            self.stem0 = nn.Sequential(
                MutableConv2d(3, c // 2, 3, stride=2, padding=1, bias=False), MutableBatchNorm2d(c // 2),
                nn.ReLU(inplace=True),
                MutableConv2d(c // 2, c, 3, stride=2, padding=1, bias=False), MutableBatchNorm2d(c))
            self.stem1 = nn.Sequential(nn.ReLU(inplace=True),
                                       MutableConv2d(c, c, 3, stride=2, padding=1, bias=False), MutableBatchNorm2d(c))
            c_pprev = c_prev = c_curr = c
            last_cell_reduce = True
        else:
            self.stem = nn.Sequential(MutableConv2d(3, 3 * c, 3, padding=1, bias=False), MutableBatchNorm2d(3 * c))
            c_pprev = c_prev = 3 * c
            c_curr = c
            last_cell_reduce = False

        self.stages = nn.ModuleList()
        for stage_index in range(3):
            if stage_index > 0:
                c_curr = c_curr * 2
            builder = _CellBuilder(op_candidates, c_pprev, c_prev, c_curr, num_nodes_per_cell, merge_op,
                                   stage_index > 0, last_cell_reduce, drop_path_prob)
            self.stages.append(Repeat(builder, per_stage[stage_index]))
            c_pprev, c_prev, last_cell_reduce = builder.c_pprev, builder.c_prev, builder.last_cell_reduce
            if stage_index == 2:
                c_auxiliary = c_prev
        if auxiliary_loss:
            self.auxiliary_head = AuxiliaryHead(c_auxiliary, self.num_labels, dataset)
        self.global_pooling = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = MutableLinear(c_prev, self.num_labels)

    def forward(self, inputs: torch.Tensor) -> Any:
        if self.dataset == "imagenet":
            s0 = self.stem0(inputs)
            s1 = self.stem1(s0)
        else:
            s0 = s1 = self.stem(inputs)
        logits_aux = None
        for stage_index, stage in enumerate(self.stages):
            if stage_index == 2 and self.auxiliary_loss and self.training:
                for block_index, block in enumerate(stage):
                    s0, s1 = block([s0, s1])
                    if block_index == 0:
                        logits_aux = self.auxiliary_head(s1)
            else:
                s0, s1 = stage([s0, s1])
        logits = self.classifier(torch.flatten(self.global_pooling(s1), 1))
        if self.auxiliary_loss and self.training:
            return logits, logits_aux
        return logits

    def freeze(self, sample: Sample) -> ModelSpace:  # type: ignore[override]
        """Rebuilt from the sample, as in NNI: later cells' widths follow earlier cells' chosen inputs."""
        return self.rebuild(sample)

    def set_drop_path_prob(self, drop_prob: float) -> None:
        for module in self.modules():
            if isinstance(module, DropPath):
                module.drop_prob = drop_prob


_PRESET_DOC = """Arguments as ``NDS``: ``width`` (an int, or a tuple searched as ``width``), ``num_cells`` (an int,
    or a tuple searched as ``depth``), ``dataset`` (``'cifar'`` or ``'imagenet'``), ``auxiliary_loss``,
    ``drop_path_prob``."""


class _Preset(NDS):
    """A named NDS space: fixed operations, nodes per cell and merge rule."""

    OPERATIONS: list[str] = []
    MERGE_OP: Literal["all", "loose_end"] = "loose_end"
    NODES = 5

    def __init__(self, width: tuple[int, ...] | int = (16, 24, 32),
                 num_cells: tuple[int, ...] | int = (4, 8, 12, 16, 20),
                 dataset: Literal["cifar", "imagenet"] = "cifar", auxiliary_loss: bool = False,
                 drop_path_prob: float = 0.0) -> None:
        super().__init__(self.OPERATIONS, self.MERGE_OP, self.NODES, width, num_cells, dataset, auxiliary_loss,
                         drop_path_prob)


class NASNet(_Preset):
    __doc__ = "NASNet's space (Zoph et al., 2018): 13 operations, 5 nodes, loose ends concatenated. " + _PRESET_DOC
    NASNET_OPS = OPERATIONS = ["skip_connect", "conv_3x1_1x3", "conv_7x1_1x7", "dil_conv_3x3", "avg_pool_3x3",
                               "max_pool_3x3", "max_pool_5x5", "max_pool_7x7", "conv_1x1", "conv_3x3",
                               "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7"]


class ENAS(_Preset):
    __doc__ = "ENAS's space (Pham et al., 2018): 5 operations, 5 nodes, loose ends concatenated. " + _PRESET_DOC
    ENAS_OPS = OPERATIONS = ["skip_connect", "sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3"]


class AmoebaNet(_Preset):
    __doc__ = "AmoebaNet's space (Real et al., 2019): 8 operations, 5 nodes, loose ends concatenated. " + _PRESET_DOC
    AMOEBA_OPS = OPERATIONS = ["skip_connect", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "avg_pool_3x3",
                               "max_pool_3x3", "dil_sep_conv_3x3", "conv_7x1_1x7"]


class PNAS(_Preset):
    __doc__ = "PNAS's space (Liu et al., 2018): 8 operations, 5 nodes, all nodes concatenated. " + _PRESET_DOC
    PNAS_OPS = OPERATIONS = ["sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "conv_7x1_1x7", "skip_connect",
                             "avg_pool_3x3", "max_pool_3x3", "dil_conv_3x3"]
    MERGE_OP = "all"


class DARTS(_Preset):
    __doc__ = "DARTS's space (Liu et al., 2019): 7 operations (no 'none'), 4 nodes, all concatenated. " + _PRESET_DOC
    DARTS_OPS = OPERATIONS = ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                              "dil_conv_3x3", "dil_conv_5x5"]
    MERGE_OP = "all"
    NODES = 4
