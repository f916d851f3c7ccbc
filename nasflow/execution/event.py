"""Model events: what an engine tells the layers above it about a model, in order per model.

Each event knows the bookkeeping it implies (``apply``): the engine applies it to the model before
any callback runs, so every observer sees the model already updated.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nasflow.runtime import MetricValue
from nasflow.space import ExecutableModelSpace, ModelStatus

__all__ = [
    "ModelEventType", "ModelEvent", "TrainingStartEvent", "IntermediateMetricEvent", "FinalMetricEvent",
    "TrainingEndEvent",
]


class ModelEventType(StrEnum):
    TrainingStart = "training_start"
    IntermediateMetric = "intermediate_metric"
    FinalMetric = "final_metric"
    TrainingEnd = "training_end"


@dataclass
class ModelEvent:
    model: ExecutableModelSpace
    event_type = ModelEventType.TrainingEnd  # overridden by each subclass

    def apply(self) -> None:
        """Update the model to reflect this event."""


@dataclass
class TrainingStartEvent(ModelEvent):
    """The model's trial started; ``info`` says where (pid, node, GPUs, log path...)."""

    info: dict[str, Any] | None = None
    event_type = ModelEventType.TrainingStart

    def apply(self) -> None:
        self.model.status = ModelStatus.Training


@dataclass
class IntermediateMetricEvent(ModelEvent):
    metric: MetricValue = 0.0
    event_type = ModelEventType.IntermediateMetric

    def apply(self) -> None:
        self.model.metrics.add_intermediate(self.metric)


@dataclass
class FinalMetricEvent(ModelEvent):
    metric: MetricValue = 0.0
    event_type = ModelEventType.FinalMetric

    def apply(self) -> None:
        self.model.metrics.set_final(self.metric)


@dataclass
class TrainingEndEvent(ModelEvent):
    """The trial ended with ``status`` (Trained, Failed, Interrupted, Invalid); ``error`` says why not."""

    status: ModelStatus = ModelStatus.Trained
    error: str | None = None
    event_type = ModelEventType.TrainingEnd

    def apply(self) -> None:
        self.model.status = self.status
