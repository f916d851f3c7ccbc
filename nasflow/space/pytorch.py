"""NNI's ``nni.nas.space.pytorch`` module path: the PyTorch graph model space."""

from .graph import PytorchGraphModelSpace

__all__ = ["PytorchGraphModelSpace"]
