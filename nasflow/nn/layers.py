"""Torch layers whose arguments may be mutables: ``MutableLinear(16, choice([32, 64]))``.

In a space each one is the torch layer built with its arguments' defaults (so the space runs);
frozen, it is the plain torch layer built with the sampled arguments.
"""

from __future__ import annotations

from torch import nn

from .parametrized import ParametrizedModule

__all__ = [
    "MutableLinear", "MutableConv1d", "MutableConv2d", "MutableConv3d", "MutableConvTranspose2d",
    "MutableBatchNorm1d", "MutableBatchNorm2d", "MutableBatchNorm3d", "MutableLayerNorm", "MutableGroupNorm",
    "MutableDropout", "MutableDropout2d", "MutableMaxPool1d", "MutableMaxPool2d", "MutableAvgPool1d",
    "MutableAvgPool2d", "MutableAdaptiveAvgPool2d", "MutableEmbedding", "MutableMultiheadAttention",
    "MutableLSTM", "MutableGRU",
]


class MutableLinear(ParametrizedModule, nn.Linear, wraps=nn.Linear):
    pass


class MutableConv1d(ParametrizedModule, nn.Conv1d, wraps=nn.Conv1d):
    pass


class MutableConv2d(ParametrizedModule, nn.Conv2d, wraps=nn.Conv2d):
    pass


class MutableConv3d(ParametrizedModule, nn.Conv3d, wraps=nn.Conv3d):
    pass


class MutableConvTranspose2d(ParametrizedModule, nn.ConvTranspose2d, wraps=nn.ConvTranspose2d):
    pass


class MutableBatchNorm1d(ParametrizedModule, nn.BatchNorm1d, wraps=nn.BatchNorm1d):
    pass


class MutableBatchNorm2d(ParametrizedModule, nn.BatchNorm2d, wraps=nn.BatchNorm2d):
    pass


class MutableBatchNorm3d(ParametrizedModule, nn.BatchNorm3d, wraps=nn.BatchNorm3d):
    pass


class MutableLayerNorm(ParametrizedModule, nn.LayerNorm, wraps=nn.LayerNorm):
    pass


class MutableGroupNorm(ParametrizedModule, nn.GroupNorm, wraps=nn.GroupNorm):
    pass


class MutableDropout(ParametrizedModule, nn.Dropout, wraps=nn.Dropout):
    pass


class MutableDropout2d(ParametrizedModule, nn.Dropout2d, wraps=nn.Dropout2d):
    pass


class MutableMaxPool1d(ParametrizedModule, nn.MaxPool1d, wraps=nn.MaxPool1d):
    pass


class MutableMaxPool2d(ParametrizedModule, nn.MaxPool2d, wraps=nn.MaxPool2d):
    pass


class MutableAvgPool1d(ParametrizedModule, nn.AvgPool1d, wraps=nn.AvgPool1d):
    pass


class MutableAvgPool2d(ParametrizedModule, nn.AvgPool2d, wraps=nn.AvgPool2d):
    pass


class MutableAdaptiveAvgPool2d(ParametrizedModule, nn.AdaptiveAvgPool2d, wraps=nn.AdaptiveAvgPool2d):
    pass


class MutableEmbedding(ParametrizedModule, nn.Embedding, wraps=nn.Embedding):
    pass


class MutableMultiheadAttention(ParametrizedModule, nn.MultiheadAttention, wraps=nn.MultiheadAttention):
    pass


class MutableLSTM(ParametrizedModule, nn.LSTM, wraps=nn.LSTM):
    pass


class MutableGRU(ParametrizedModule, nn.GRU, wraps=nn.GRU):
    pass
