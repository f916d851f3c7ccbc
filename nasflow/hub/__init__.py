"""Standard model spaces, with NNI 3.0's constructors and labels (``nni.nas.hub.pytorch``)."""

from .mobilenetv3 import MobileNetV3Space
from .nasbench201 import NasBench201, NasBench201Cell
from .proxylessnas import ProxylessNAS
from .shufflenet import ShuffleNetSpace

__all__ = ["NasBench201", "NasBench201Cell", "ProxylessNAS", "MobileNetV3Space", "ShuffleNetSpace"]
