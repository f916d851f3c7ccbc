"""PyTorch model spaces: ModelSpace, LayerChoice, InputChoice, Repeat, Cell and mutable layers."""

from .base import MutableModule, recursive_freeze
from .cell import Cell
from .choice import ChosenInputs, InputChoice, LayerChoice, ValueChoice
from .layers import *  # noqa: F403
from .layers import __all__ as _layers
from .legacy import MutationAnchor, basic_unit, model_wrapper
from .parametrized import ParameterizedModule, ParametrizedModule
from .repeat import Repeat
from .space import BaseModelSpace, ModelSpace, current_model, model_context

__all__ = [
    "MutableModule", "ModelSpace", "BaseModelSpace", "ParametrizedModule", "ParameterizedModule", "recursive_freeze",
    "LayerChoice", "InputChoice", "ChosenInputs", "ValueChoice", "Repeat", "Cell", "model_context", "current_model",
    "basic_unit", "model_wrapper", "MutationAnchor", *_layers,
]
