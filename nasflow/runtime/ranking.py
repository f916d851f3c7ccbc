"""Which metric is better: the number a metric stands for, and the direction it improves in.

Torch-free, so the CLI and the dashboard rank stored results without loading the model stack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["METRIC_DIRECTIONS", "MetricDirection", "metric_number", "metric_score"]

MetricDirection = Literal["maximize", "minimize"]
METRIC_DIRECTIONS: tuple[MetricDirection, ...] = ("maximize", "minimize")


def metric_number(value: Any) -> float | None:
    """The number strategies compare: the value itself, or its ``'default'`` entry."""
    if value is None:
        return None
    return float(value["default"]) if isinstance(value, Mapping) else float(value)


def metric_score(value: Any, direction: MetricDirection = "maximize") -> float | None:
    """The number to maximize: the metric's number, negated when lower is better."""
    number = metric_number(value)
    return None if number is None else (number if direction == "maximize" else -number)
