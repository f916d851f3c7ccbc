"""Executable model formats: raw (in place), simplified (constructor + sample) and graph."""

from nasflow.nn.space import BaseModelSpace, current_model, model_context

from .base import ExecutableModelSpace
from .graph import GraphModelSpace, Mutation, Mutator, MutatorSequence, PytorchGraphModelSpace, StationaryMutator
from .metrics import Metrics, ModelStatus, metric_number
from .raw import RawFormatModelSpace
from .simplified import SimplifiedModelSpace

__all__ = [
    "BaseModelSpace", "ExecutableModelSpace", "RawFormatModelSpace", "SimplifiedModelSpace", "GraphModelSpace",
    "PytorchGraphModelSpace",
    "ModelStatus", "Metrics", "metric_number", "model_context", "current_model", "Mutator", "StationaryMutator",
    "MutatorSequence", "Mutation",
]
