"""Executable model formats: raw (in place), simplified (constructor + sample) and graph."""

from nasflow.nn.space import BaseModelSpace, current_model, model_context

from .base import ExecutableModelSpace
from .metrics import Metrics, ModelStatus, metric_number
from .raw import RawFormatModelSpace
from .simplified import SimplifiedModelSpace

__all__ = [
    "BaseModelSpace", "ExecutableModelSpace", "RawFormatModelSpace", "SimplifiedModelSpace",
    "ModelStatus", "Metrics", "metric_number", "model_context", "current_model",
]
