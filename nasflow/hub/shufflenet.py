"""ShuffleNet space of Single Path One-Shot (Guo et al., 2020): 20 blocks, each one of four
ShuffleNetV2-style candidates (``k3``, ``k5``, ``k7``, ``xcep``), labels ``layer_1`` .. ``layer_20``
and, with ``channel_search``, ``channel_1`` .. ``channel_20`` (as NNI 3.0)."""

from __future__ import annotations

import torch
from torch import nn

import nasflow
from nasflow.mutable import MutableExpression
from nasflow.nn import LayerChoice, ModelSpace, MutableBatchNorm2d, MutableConv2d

__all__ = ["ShuffleNetSpace", "ShuffleNetBlock", "ShuffleXceptionBlock"]

Channels = int | MutableExpression


class ShuffleNetBlock(nn.Module):
    """A ShuffleNetV2 unit. With stride 1 half of the input's channels pass through (after a channel
    shuffle) and the other half go through the main branch; with stride 2 a projection branch
    replaces the identity. ``sequence`` spells the main branch: ``p`` pointwise, ``d`` depthwise."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: Channels, *, kernel_size: int,
                 stride: int, sequence: str = "pdp", affine: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2) or kernel_size not in (3, 5, 7):
            raise ValueError(f"ShuffleNetBlock: stride must be 1 or 2 and kernel_size 3, 5 or 7; got {stride}, "
                             f"{kernel_size}.")
        self.stride = stride
        self.channels = in_channels // 2 if stride == 1 else in_channels
        main_out = out_channels - self.channels
        if main_out <= 0:
            raise ValueError(f"ShuffleNetBlock: out_channels ({out_channels}) must exceed the channels passed "
                             f"through ({self.channels}).")
        layers: list[nn.Module] = []
        previous: Channels = self.channels
        first_depthwise, first_pointwise = True, True
        for i, token in enumerate(sequence):
            if token == "p":
                last = i == len(sequence) - 1
                width: Channels = main_out if last else (mid_channels if first_pointwise else previous)
                layers += [MutableConv2d(previous, width, 1, 1, 0, bias=False),
                           MutableBatchNorm2d(width, affine=affine), nn.ReLU(inplace=True)]
                first_pointwise = False
            elif token == "d":
                width = previous
                layers += [MutableConv2d(previous, width, kernel_size, stride if first_depthwise else 1,
                                         kernel_size // 2, groups=width, bias=False),
                           MutableBatchNorm2d(width, affine=affine)]
                first_depthwise = False
            else:
                raise ValueError(f"ShuffleNetBlock: sequence may hold only 'p' and 'd', got {sequence!r}.")
            previous = width
        if sequence[-1:] != "p":
            raise ValueError(f"ShuffleNetBlock: the sequence must end with a pointwise convolution, got {sequence!r}.")
        self.branch_main = nn.Sequential(*layers)
        self.branch_proj = nn.Sequential()
        if stride == 2:
            c = self.channels
            self.branch_proj = nn.Sequential(
                MutableConv2d(c, c, kernel_size, stride, kernel_size // 2, groups=c, bias=False),
                MutableBatchNorm2d(c, affine=affine),
                MutableConv2d(c, c, 1, 1, 0, bias=False),
                MutableBatchNorm2d(c, affine=affine),
                nn.ReLU(inplace=True),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)
        # channel shuffle of ShuffleNetV2: even channels pass through, odd ones go through the branch
        return torch.cat((x[:, 0::2], self.branch_main(x[:, 1::2])), 1)


class ShuffleXceptionBlock(ShuffleNetBlock):
    """The ``choice_x`` candidate: three depthwise-pointwise pairs with 3x3 kernels."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: Channels, *, stride: int,
                 affine: bool = True) -> None:
        super().__init__(in_channels, out_channels, mid_channels, kernel_size=3, stride=stride,
                         sequence="dpdpdp", affine=affine)


class ShuffleNetSpace(ModelSpace):
    """4^20 architectures of 20 choice blocks in four stages (4, 4, 8, 4 blocks).

    ``channel_search`` also searches each block's middle width among 0.2x .. 1.6x of the default.
    """

    stage_repeats = (4, 4, 8, 4)
    stage_out_channels = (-1, 16, 64, 160, 320, 640, 1024)

    def __init__(self, num_labels: int = 1000, channel_search: bool = False, affine: bool = True) -> None:
        super().__init__()
        self.num_labels, self.channel_search, self.affine = num_labels, channel_search, affine
        out_channels = self.stage_out_channels[1]
        self.first_conv = nn.Sequential(nn.Conv2d(3, out_channels, 3, 2, 1, bias=False),
                                        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
        blocks = []
        index = 0
        for stage, repeats in enumerate(self.stage_repeats):
            for position in range(repeats):
                index += 1
                in_channels, out_channels = out_channels, self.stage_out_channels[stage + 2]
                stride = 2 if position == 0 else 1
                base = out_channels // 2
                mid: Channels = base
                if channel_search:
                    mid = nasflow.choice(f"channel_{index}", [int(base * 0.2 * k) for k in range(1, 9)])
                blocks.append(LayerChoice({
                    "k3": ShuffleNetBlock(in_channels, out_channels, mid, kernel_size=3, stride=stride, affine=affine),
                    "k5": ShuffleNetBlock(in_channels, out_channels, mid, kernel_size=5, stride=stride, affine=affine),
                    "k7": ShuffleNetBlock(in_channels, out_channels, mid, kernel_size=7, stride=stride, affine=affine),
                    "xcep": ShuffleXceptionBlock(in_channels, out_channels, mid, stride=stride, affine=affine),
                }, label=f"layer_{index}"))
        self.features = nn.Sequential(*blocks)
        last = self.stage_out_channels[-1]
        self.conv_last = nn.Sequential(nn.Conv2d(out_channels, last, 1, 1, 0, bias=False),
                                       nn.BatchNorm2d(last, affine=affine), nn.ReLU(inplace=True))
        self.globalpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Sequential(nn.Linear(last, num_labels, bias=False))
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        """SPOS's initialization: small normal convolutions, unit batch norms with a tiny bias."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Conv2d):
                std = 0.01 if "first" in name else 1.0 / module.weight.shape[1]
                nn.init.normal_(module.weight, 0, std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
                if module.weight is not None:
                    nn.init.ones_(module.weight)
                    nn.init.constant_(module.bias, 0.0001)
                if module.running_mean is not None:
                    nn.init.zeros_(module.running_mean)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.globalpool(self.conv_last(self.features(self.first_conv(x))))
        return self.classifier(self.dropout(torch.flatten(x, 1)))
