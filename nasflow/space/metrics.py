"""A model's status and the metrics its trial reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nasflow.runtime import MetricValue, normalize_metric

__all__ = ["ModelStatus", "Metrics", "metric_number"]


class ModelStatus(StrEnum):
    """Initialized -> Frozen -> Training -> Trained | Failed | Interrupted | Invalid (Retrying)."""

    Initialized = "initialized"
    Frozen = "frozen"
    Training = "training"
    Trained = "trained"
    Failed = "failed"
    Interrupted = "interrupted"
    Invalid = "invalid"
    Retrying = "retrying"

    def frozen(self) -> bool:
        return self is not ModelStatus.Initialized

    def completed(self) -> bool:
        return self in (ModelStatus.Trained, ModelStatus.Failed, ModelStatus.Interrupted, ModelStatus.Invalid)


def metric_number(value: MetricValue | None) -> float | None:
    """The number strategies compare: the value itself, or its ``'default'`` entry."""
    if value is None:
        return None
    return float(value["default"]) if isinstance(value, dict) else float(value)


@dataclass
class Metrics:
    """Intermediate metrics in report order, and the final one."""

    intermediates: list[MetricValue] = field(default_factory=list)
    final: MetricValue | None = None

    def add_intermediate(self, value: Any) -> None:
        self.intermediates.append(normalize_metric(value))

    def set_final(self, value: Any) -> None:
        self.final = normalize_metric(value)

    @property
    def value(self) -> float | None:
        """The final metric as a number (None until reported)."""
        return metric_number(self.final)

    def clear(self) -> None:
        self.intermediates.clear()
        self.final = None
