"""Blocks of the mobile spaces (ProxylessNAS, MobileNetV3): conv-BN-activation, depthwise-separable
and inverted-residual blocks, squeeze-and-excite. Widths, kernel sizes and expand ratios may be
choices (expressions), so one block definition serves both spaces."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import torch
from torch import nn

from nasflow.mutable import MutableExpression
from nasflow.nn import MutableBatchNorm2d, MutableConv2d

__all__ = ["make_divisible", "ConvBNReLU", "DepthwiseSeparableConv", "InvertedResidual", "SqueezeExcite",
           "reset_parameters", "batch_norm"]

MaybeChoice = Any  # an int or a MutableExpression of one


def make_divisible(value: MaybeChoice, divisor: int, min_value: int | None = None) -> MaybeChoice:
    """Round ``value`` to a multiple of ``divisor`` (at least ``min_value``), never more than 10% down:
    the channel rounding of the TensorFlow mobile models. Works on numbers and on choices."""
    floor = divisor if min_value is None else min_value
    rounded = MutableExpression.max(floor, round(value + divisor // 2) // divisor * divisor)
    return MutableExpression.condition(rounded < 0.9 * value, rounded + divisor, rounded)


def _flat(modules: Iterable[nn.Module | None]) -> Iterator[nn.Module]:
    """Flatten one level of Sequential and skip the absent parts. A searched part that resolves to
    ``nn.Identity`` (squeeze-and-excite turned off) keeps its place, so module paths are the same
    whether a model was frozen in place (raw format) or built from its sample (simplified, graph)."""
    for module in modules:
        if isinstance(module, nn.Sequential):
            yield from module.children()
        elif module is not None:
            yield module


class ConvBNReLU(nn.Sequential):
    """Convolution, normalization (a bias instead when ``norm_layer`` is ``nn.Identity``), activation."""

    def __init__(self, in_channels: MaybeChoice, out_channels: MaybeChoice, kernel_size: MaybeChoice = 3,
                 stride: int = 1, groups: MaybeChoice = 1, norm_layer: Callable[..., nn.Module] | None = None,
                 activation_layer: Callable[..., nn.Module] | None = None, dilation: int = 1) -> None:
        norm: nn.Module | None = (norm_layer or MutableBatchNorm2d)(out_channels)
        activation: nn.Module | None = (activation_layer or nn.ReLU6)(inplace=True)
        conv = MutableConv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2 * dilation,
                             dilation=dilation, groups=groups, bias=isinstance(norm, nn.Identity))
        norm = None if isinstance(norm, nn.Identity) else norm  # no normalization: the conv has a bias
        activation = None if isinstance(activation, nn.Identity) else activation
        super().__init__(*_flat([conv, norm, activation]))


class _Residual(nn.Sequential):
    """A sequence with a skip connection when it keeps the shape (stride 1, the same width object)."""

    has_skip: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return x + out if self.has_skip else out


class DepthwiseSeparableConv(_Residual):
    """Depthwise convolution, optional squeeze-and-excite, pointwise linear projection."""

    def __init__(self, in_channels: MaybeChoice, out_channels: MaybeChoice, kernel_size: MaybeChoice = 3,
                 stride: int = 1, squeeze_excite: Callable[[Any, Any], nn.Module] | None = None,
                 norm_layer: Callable[..., nn.Module] | None = None,
                 activation_layer: Callable[..., nn.Module] | None = None) -> None:
        super().__init__(*_flat([
            ConvBNReLU(in_channels, in_channels, kernel_size, stride, groups=in_channels, norm_layer=norm_layer,
                       activation_layer=activation_layer),
            squeeze_excite(in_channels, in_channels) if squeeze_excite else None,
            ConvBNReLU(in_channels, out_channels, 1, norm_layer=norm_layer, activation_layer=nn.Identity),
        ]))
        self.has_skip = stride == 1 and in_channels is out_channels  # "is": a choice has no usable ==


class InvertedResidual(_Residual):
    """MBConv (MobileNetV2): pointwise expansion by ``expand_ratio``, depthwise ``kernel_size``
    convolution, optional squeeze-and-excite, pointwise linear projection."""

    def __init__(self, in_channels: MaybeChoice, out_channels: MaybeChoice, expand_ratio: MaybeChoice,
                 kernel_size: MaybeChoice = 3, stride: int = 1,
                 squeeze_excite: Callable[[Any, Any], nn.Module] | None = None,
                 norm_layer: Callable[..., nn.Module] | None = None,
                 activation_layer: Callable[..., nn.Module] | None = None) -> None:
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride}.")
        hidden = make_divisible(in_channels * expand_ratio, 8)
        super().__init__(*_flat([
            ConvBNReLU(in_channels, hidden, 1, norm_layer=norm_layer, activation_layer=activation_layer),
            ConvBNReLU(hidden, hidden, kernel_size, stride, groups=hidden, norm_layer=norm_layer,
                       activation_layer=activation_layer),
            squeeze_excite(hidden, in_channels) if squeeze_excite is not None else None,
            ConvBNReLU(hidden, out_channels, 1, norm_layer=norm_layer, activation_layer=nn.Identity),
        ]))
        self.stride, self.out_channels = stride, out_channels
        self.has_skip = stride == 1 and in_channels is out_channels


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite: channel gates from the spatial mean, through a bottleneck of 1/4 width."""

    def __init__(self, channels: MaybeChoice, reduction_ratio: float = 0.25,
                 gate_layer: Callable[..., nn.Module] | None = None,
                 activation_layer: Callable[..., nn.Module] | None = None) -> None:
        super().__init__()
        reduced = make_divisible(channels * reduction_ratio, 8)
        self.conv_reduce = MutableConv2d(channels, reduced, 1, bias=True)
        self.act1 = (activation_layer or nn.ReLU)(inplace=True)
        self.conv_expand = MutableConv2d(reduced, channels, 1, bias=True)
        self.gate = (gate_layer or nn.Hardsigmoid)()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * self.gate(gates)


def batch_norm(eps: float, momentum: float) -> Callable[..., nn.Module]:
    """The spaces' normalization layer; epsilon and momentum are construction arguments so that
    every format (which may rebuild layers from their arguments) keeps them."""
    return partial(MutableBatchNorm2d, eps=eps, momentum=momentum)


def reset_parameters(model: nn.Module) -> None:
    """He (fan-out) normal convolutions, unit batch norms, small normal linear layers: the
    initialization of the mobile spaces."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
            nn.init.normal_(module.weight, 0, math.sqrt(2.0 / fan_out))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            if module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
