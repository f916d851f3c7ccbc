"""Standard model spaces, with NNI 3.0's constructors and labels (``nni.nas.hub.pytorch``)."""

from .mobilenetv3 import MobileNetV3Space
from .nasbench101 import NasBench101, NasBench101Cell
from .nasbench201 import NasBench201, NasBench201Cell
from .nasnet import DARTS, ENAS, NDS, PNAS, AmoebaNet, NASNet
from .proxylessnas import ProxylessNAS
from .shufflenet import ShuffleNetSpace

__all__ = [
    "NasBench101", "NasBench101Cell", "NasBench201", "NasBench201Cell",
    "NDS", "NASNet", "ENAS", "AmoebaNet", "PNAS", "DARTS",
    "ProxylessNAS", "MobileNetV3Space", "ShuffleNetSpace",
]
