"""MobileNetV3 space of TuNAS (Bender et al., 2020), with NNI 3.0's arguments and labels: per-stage
width multipliers ``s{k}_width_mult``, kernel sizes ``stem_ks`` / ``s{k}_i{j}_ks``, expand ratios
``s{k}_i{j}_exp``, depths ``s{k}_depth`` and optional squeeze-and-excite ``s{k}_i{j}_se``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

import torch
from torch import nn

import nasflow
from nasflow.nn import LayerChoice, ModelSpace, MutableLinear, Repeat

from .mobile_ops import (
    ConvBNReLU,
    DepthwiseSeparableConv,
    InvertedResidual,
    SqueezeExcite,
    batch_norm,
    make_divisible,
    reset_parameters,
)

__all__ = ["MobileNetV3Space"]

SEMode = Literal["force", "optional", "none"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"hswish": nn.Hardswish, "swish": nn.SiLU, "relu": nn.ReLU}


def _activation(name: str) -> type[nn.Module]:
    if name not in _ACTIVATIONS:
        raise ValueError(f"MobileNetV3Space: activation {name!r} is not one of {sorted(_ACTIVATIONS)}.")
    return _ACTIVATIONS[name]


def _se_or_skip(hidden: Any, inputs: Any, *, optional: bool, se_from_exp: bool, label: str) -> nn.Module:
    se = SqueezeExcite(hidden if se_from_exp else inputs)
    return LayerChoice({"identity": nn.Identity(), "se": se}, label=label) if optional else se


class MobileNetV3Space(ModelSpace):
    """The largest TuNAS space: stem, a depthwise-separable stage, searched inverted-residual stages
    (``len(base_widths) - 4`` of them), and a head. ``width_multipliers`` as a float fixes the widths."""

    def __init__(
        self, num_labels: int = 1000,
        base_widths: Sequence[int] = (16, 16, 16, 32, 64, 128, 256, 512, 1024),
        width_multipliers: Sequence[float] | float = (0.5, 0.625, 0.75, 1.0, 1.25, 1.5, 2.0),
        expand_ratios: Sequence[float] = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0),
        squeeze_excite: Sequence[SEMode] = ("none", "none", "optional", "none", "optional", "optional"),
        depth_range: Sequence[tuple[int, int]] | tuple[int, int] = (1, 4),
        stride: Sequence[int] = (2, 1, 2, 2, 2, 1, 2, 1, 1),
        activation: Sequence[str] = ("hswish", "relu", "relu", "relu", "hswish", "hswish", "hswish", "hswish",
                                     "hswish"),
        se_from_exp: bool = True, dropout_rate: float = 0.2, bn_eps: float = 1e-3, bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.num_blocks = n = len(base_widths) - 1
        if n < 4 or not len(base_widths) == len(stride) == len(activation):
            raise ValueError("MobileNetV3Space: base_widths, stride and activation need one entry per block plus the "
                             f"stem (at least 5), got {len(base_widths)}, {len(stride)}, {len(activation)}.")
        if len(squeeze_excite) != n - 2 or any(se not in ("force", "optional", "none") for se in squeeze_excite):
            raise ValueError(f"MobileNetV3Space: squeeze_excite needs {n - 2} of 'force', 'optional', 'none', "
                             f"got {list(squeeze_excite)}.")
        if isinstance(depth_range[0], int):
            depth_range = [tuple(depth_range)] * (n - 3)  # type: ignore[list-item]
        if len(depth_range) != n - 3 or any(not 1 <= d[0] <= d[1] for d in depth_range):  # type: ignore[index]
            raise ValueError(f"MobileNetV3Space: depth_range needs {n - 3} (min, max) ranges with 1 <= min <= max, "
                             f"got {depth_range}.")
        self.depth_range = [tuple(d) for d in depth_range]  # type: ignore[union-attr]
        self.expand_ratios, self.se_from_exp = list(expand_ratios), se_from_exp
        self.widths: list[Any] = []
        for i, base in enumerate(base_widths):
            if isinstance(width_multipliers, float | int):
                self.widths.append(int(make_divisible(base * width_multipliers, 8)))
            else:  # the stem and stage 0 share one multiplier, as in TuNAS
                multiplier = nasflow.choice(f"s{max(i - 1, 0)}_width_mult", list(width_multipliers))
                self.widths.append(make_divisible(multiplier * base, 8))

        self.norm = norm = batch_norm(bn_eps, bn_momentum)
        self.stem = ConvBNReLU(3, self.widths[0], nasflow.choice("stem_ks", [3, 5]), stride=stride[0],
                               norm_layer=norm, activation_layer=_activation(activation[0]))
        blocks: list[nn.Module] = [DepthwiseSeparableConv(
            self.widths[0], self.widths[1], nasflow.choice("s0_i0_ks", [3, 5, 7]), stride=stride[1],
            squeeze_excite=self._se(squeeze_excite[0], "s0_i0_se"), norm_layer=norm,
            activation_layer=_activation(activation[1]))]
        blocks += [self._stage(i, squeeze_excite[i], stride[i + 1], _activation(activation[i + 1]))
                   for i in range(1, n - 2)]
        blocks += [
            ConvBNReLU(self.widths[n - 2], self.widths[n - 1], kernel_size=1, stride=stride[n - 1],
                       norm_layer=norm, activation_layer=_activation(activation[n - 1])),
            nn.AdaptiveAvgPool2d(1),
            ConvBNReLU(self.widths[n - 1], self.widths[n], kernel_size=1, stride=stride[n], norm_layer=nn.Identity,
                       activation_layer=_activation(activation[n])),
        ]
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(dropout_rate), MutableLinear(self.widths[n], num_labels))
        reset_parameters(self)

    def _se(self, mode: str, label: str) -> Callable[[Any, Any], nn.Module] | None:
        if mode == "none":
            return None
        return partial(_se_or_skip, optional=mode == "optional", se_from_exp=self.se_from_exp, label=label)

    def _stage(self, stage: int, se: str, stride: int, activation: type[nn.Module]) -> nn.Module:
        def build(index: int) -> nn.Module:
            return InvertedResidual(
                self.widths[stage] if index == 0 else self.widths[stage + 1], self.widths[stage + 1],
                nasflow.choice(f"s{stage}_i{index}_exp", self.expand_ratios),
                nasflow.choice(f"s{stage}_i{index}_ks", [3, 5, 7]),
                stride=stride if index == 0 else 1,  # only a stage's first block changes the resolution
                squeeze_excite=self._se(se, f"s{stage}_i{index}_se"), norm_layer=self.norm,
                activation_layer=activation)

        low, high = self.depth_range[stage - 1]
        return Repeat(build, depth=(low, high), label=f"s{stage}_depth")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.blocks(self.stem(x)), 1))
