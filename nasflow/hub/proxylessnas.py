"""ProxylessNAS's space (Cai et al., 2019) with NNI 3.0's labels: per stage ``s{k}_depth`` (1-4 blocks,
stages 2-6) and per block ``s{k}_i{j}``, a choice among MBConv blocks ``k{3,5,7}e{3,6}``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nasflow.nn import LayerChoice, ModelSpace, MutableLinear, Repeat

from .mobile_ops import (
    ConvBNReLU,
    DepthwiseSeparableConv,
    InvertedResidual,
    batch_norm,
    make_divisible,
    reset_parameters,
)

__all__ = ["ProxylessNAS"]


def _block_choice(expand_ratios: list[int], kernel_sizes: list[int], downsample: bool, in_width: int,
                  out_width: int, stage: str, norm: Callable[..., nn.Module]) -> Callable[[int], nn.Module]:
    def build(index: int) -> nn.Module:
        first = index == 0
        stride = 2 if first and downsample else 1
        width = in_width if first else out_width
        candidates = {f"k{k}e{e}": InvertedResidual(width, out_width, e, k, stride, norm_layer=norm)
                      for e in expand_ratios for k in kernel_sizes}
        return LayerChoice(candidates, label=f"{stage}_i{index}")

    return build


class ProxylessNAS(ModelSpace):
    """A MobileNetV2-like body: a fixed first stage, then six stages of MBConv choices.

    ``base_widths`` are the widths of stem, stages and head (9 values), scaled by ``width_mult``
    and rounded to multiples of 8.
    """

    def __init__(self, num_labels: int = 1000, base_widths: tuple[int, ...] = (32, 16, 32, 40, 80, 96, 192, 320, 1280),
                 dropout_rate: float = 0.0, width_mult: float = 1.0, bn_eps: float = 1e-3,
                 bn_momentum: float = 0.1) -> None:
        super().__init__()
        if len(base_widths) != 9:
            raise ValueError(f"ProxylessNAS: base_widths needs 9 widths (stem, 7 stages, head), "
                             f"got {len(base_widths)}.")
        widths = [int(make_divisible(w * width_mult, 8)) for w in base_widths]
        downsamples = [True, False, True, True, True, False, True, False]
        self.num_labels, self.dropout_rate = num_labels, dropout_rate
        self.bn_eps, self.bn_momentum = bn_eps, bn_momentum
        norm = batch_norm(bn_eps, bn_momentum)
        self.stem = ConvBNReLU(3, widths[0], stride=2, norm_layer=norm)
        blocks: list[nn.Module] = [DepthwiseSeparableConv(widths[0], widths[1], kernel_size=3, stride=1,
                                                          norm_layer=norm)]
        for stage in range(2, 8):
            build = _block_choice([3, 6], [3, 5, 7], downsamples[stage], widths[stage - 1], widths[stage], f"s{stage}",
                                  norm)
            blocks.append(Repeat(build, (1, 4), label=f"s{stage}_depth") if stage < 7 else build(0))
        self.blocks = nn.Sequential(*blocks)
        self.feature_mix_layer = ConvBNReLU(widths[7], widths[8], kernel_size=1, norm_layer=norm)
        self.global_avg_pooling = nn.AdaptiveAvgPool2d(1)
        self.dropout_layer = nn.Dropout(dropout_rate)
        self.classifier = MutableLinear(widths[-1], num_labels)
        reset_parameters(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.global_avg_pooling(self.feature_mix_layer(self.blocks(self.stem(x))))
        return self.classifier(self.dropout_layer(torch.flatten(x, 1)))

    def no_weight_decay(self) -> set[str]:
        """Parameters an optimizer should not decay (the classifier's)."""
        return {"classifier.weight", "classifier.bias"}
