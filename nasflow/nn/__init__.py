"""PyTorch model spaces: ModelSpace, LayerChoice, InputChoice, Repeat, Cell and mutable layers."""

from .base import MutableModule
from .cell import Cell
from .choice import ChosenInputs, InputChoice, LayerChoice
from .layers import *  # noqa: F403
from .layers import __all__ as _layers
from .parametrized import ParameterizedModule, ParametrizedModule
from .repeat import Repeat
from .space import BaseModelSpace, ModelSpace, current_model, model_context

__all__ = [
    "MutableModule", "ModelSpace", "BaseModelSpace", "ParametrizedModule", "ParameterizedModule",
    "LayerChoice", "InputChoice", "ChosenInputs", "Repeat", "Cell", "model_context", "current_model", *_layers,
]
