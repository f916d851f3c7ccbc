"""Execution engines: where and how submitted models run, and the events they report."""

from .engine import EventCallback, ExecutionEngine, Middleware
from .event import (
    FinalMetricEvent,
    IntermediateMetricEvent,
    ModelEvent,
    ModelEventType,
    TrainingEndEvent,
    TrainingStartEvent,
)
from .sequential import SequentialExecutionEngine
from .training_service import TrainingServiceExecutionEngine

__all__ = [
    "ExecutionEngine", "Middleware", "EventCallback", "SequentialExecutionEngine", "TrainingServiceExecutionEngine",
    "ModelEventType", "ModelEvent",
    "TrainingStartEvent", "IntermediateMetricEvent", "FinalMetricEvent", "TrainingEndEvent",
]
