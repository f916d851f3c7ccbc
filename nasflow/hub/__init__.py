"""Standard model spaces, with NNI 3.0's constructors and labels (``nni.nas.hub.pytorch``)."""

from .nasbench201 import NasBench201, NasBench201Cell
from .shufflenet import ShuffleNetSpace

__all__ = ["NasBench201", "NasBench201Cell", "ShuffleNetSpace"]
