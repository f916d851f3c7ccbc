"""A model's status and the metrics its trial reported."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from nasflow.runtime import normalize_metric
from nasflow.runtime.metric import METRIC_DIRECTIONS, MetricDirection, metric_number, metric_score

__all__ = ["METRIC_DIRECTIONS", "MetricDirection", "ModelStatus", "Metrics", "metric_number", "metric_score"]


class ModelStatus(StrEnum):
    """Initialized -> Frozen -> Training -> Trained | Failed | Interrupted | Invalid (Retrying)."""

    Initialized = "initialized"
    Mutating = "mutating"
    Frozen = "frozen"
    Training = "training"
    Trained = "trained"
    Failed = "failed"
    Interrupted = "interrupted"
    Invalid = "invalid"
    Retrying = "retrying"

    def frozen(self) -> bool:
        return self not in (ModelStatus.Initialized, ModelStatus.Mutating)

    def completed(self) -> bool:
        return self in (ModelStatus.Trained, ModelStatus.Failed, ModelStatus.Interrupted, ModelStatus.Invalid)


class Metrics:
    """The metrics a model's trial reported: intermediates in report order, and the final one.

    As in NNI, a strict ``Metrics`` keeps numbers: a dict metric is stored as its ``'default'``
    entry; ``strict=False`` keeps any value as given. ``reported_intermediates`` and
    ``reported_final`` keep what the trial reported (dicts whole), as the experiment's store does.
    """

    def __init__(self, strict: bool = True, intermediates: list[Any] | None = None, final: Any = None) -> None:
        self.strict = strict
        self.intermediates: list[Any] = []
        self.reported_intermediates: list[Any] = []
        self._final: Any = None
        self.reported_final: Any = None
        for value in intermediates or []:
            self.add_intermediate(value)
        if final is not None:
            self.final = final

    def _dump(self, value: Any) -> Any:
        if not self.strict:
            return value
        if isinstance(value, dict):
            if "default" not in value:
                raise ValueError(f"A dict metric must have a 'default' entry (the number strategies compare), "
                                 f"got {value!r}.")
            value = value["default"]
        try:
            return normalize_metric(value)  # a number here: the trial's definition of one
        except TypeError as err:
            raise ValueError(f"Metric {value!r} is not a number: report a number, or a dict with a 'default' "
                             "number.") from err

    def add_intermediate(self, value: Any) -> None:
        self.intermediates.append(self._dump(value))
        self.reported_intermediates.append(value)

    @property
    def final(self) -> Any:
        return self._final

    @final.setter
    def final(self, value: Any) -> None:
        self._final = None if value is None else self._dump(value)
        self.reported_final = value

    def set_final(self, value: Any) -> None:
        self.final = value

    @property
    def value(self) -> float | None:
        """The final metric as a number (None until reported)."""
        return metric_number(self._final) if isinstance(self._final, (int, float, dict)) else None

    def clear(self) -> None:
        self.intermediates.clear()
        self.reported_intermediates.clear()
        self._final = self.reported_final = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Metrics) and (self.strict, self.intermediates, self._final) == (
            other.strict, other.intermediates, other._final)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Metrics(intermediates=<array of length {len(self.intermediates)}>, final={self._final})"
