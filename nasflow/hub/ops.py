"""Operations shared by the cell-based hub spaces (NAS-Bench-201, DARTS / NASNet family).

Convolutions and norms are the ``Mutable*`` layers so that widths may be choices (NASNet's
``width``); with plain ints they build plain ``nn.Conv2d`` / ``nn.BatchNorm2d``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nasflow.nn import MutableBatchNorm2d, MutableConv2d

__all__ = ["ReLUConvBN", "Pooling", "Zero", "FactorizedReduce"]


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution, batch norm: the convolution of cell-based spaces."""

    def __init__(self, c_in: Any, c_out: Any, kernel_size: Any, stride: Any, padding: Any, dilation: int = 1,
                 affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            MutableConv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False),
            MutableBatchNorm2d(c_out, affine=affine),
        )


class Pooling(nn.Module):
    """3x3 average or max pooling, after a 1x1 ReLUConvBN when the width changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, mode: str) -> None:
        super().__init__()
        self.preprocess = None if c_in == c_out else ReLUConvBN(c_in, c_out, 1, 1, 0)
        if mode == "avg":
            self.op: nn.Module = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        elif mode == "max":
            self.op = nn.MaxPool2d(3, stride=stride, padding=1)
        else:
            raise ValueError(f"Pooling: mode must be 'avg' or 'max', got {mode!r}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess is not None:
            x = self.preprocess(x)
        return self.op(x)


class Zero(nn.Module):
    """The 'none' operation: zeros of the output's shape (the edge is cut)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        if self.c_in == self.c_out:
            return x.mul(0.0)
        shape = list(x.shape)
        shape[1] = self.c_out
        return x.new_zeros(shape)


class FactorizedReduce(nn.Module):
    """Halves the resolution with two stride-2 1x1 convolutions on offset grids, concatenated."""

    def __init__(self, c_in: Any, c_out: Any, stride: int = 2, affine: bool = True) -> None:
        super().__init__()
        if stride != 2:
            raise ValueError(f"FactorizedReduce only reduces by 2, got stride {stride}.")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = MutableConv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = MutableConv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.pad = nn.ConstantPad2d((0, 1, 0, 1), 0.0)
        self.bn = MutableBatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = self.pad(x)[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))
