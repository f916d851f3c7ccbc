"""Executable model formats: raw (in place), simplified (constructor + sample) and graph."""

from nasflow.nn.space import BaseModelSpace, current_model, model_context

from .base import ExecutableModelSpace
from .graph import GraphModelSpace, Mutation, Mutator, MutatorSequence, PytorchGraphModelSpace, StationaryMutator
from .metrics import METRIC_DIRECTIONS, MetricDirection, Metrics, ModelStatus, metric_number, metric_score
from .raw import RawFormatModelSpace
from .simplified import SimplifiedModelSpace

__all__ = [
    "BaseModelSpace", "ExecutableModelSpace", "RawFormatModelSpace", "SimplifiedModelSpace", "GraphModelSpace",
    "PytorchGraphModelSpace",
    "ModelStatus", "Metrics", "metric_number", "metric_score", "MetricDirection", "METRIC_DIRECTIONS",
    "model_context", "current_model", "Mutator", "StationaryMutator",
    "MutatorSequence", "Mutation",
]
