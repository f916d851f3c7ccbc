"""``MedianStop``: the median stopping rule (Golovin et al., 2017, "Google Vizier")."""

from __future__ import annotations

import logging
import statistics
from typing import Any

from nasflow.execution import ModelEvent, ModelEventType
from nasflow.space import ExecutableModelSpace, ModelStatus, metric_score

from ..append_log import AppendLog
from ..utils import check_int
from .base import StrategyMiddleware

__all__ = ["MedianStop"]

_logger = logging.getLogger(__name__)


class MedianStop(StrategyMiddleware):
    """Stops a running model that is doing worse than the typical completed one at the same step.

    Once ``warmup`` models have completed (ended Trained), a running model that has reported
    ``s >= start_step`` intermediate metrics is cancelled when the best of them is below the median,
    over completed models that reported at least ``s``, of the mean of their first ``s``
    intermediates. It ends Interrupted (through ``engine.cancel_models``); higher is better.
    """

    def __init__(self, warmup: int = 5, start_step: int = 1) -> None:
        super().__init__()
        self.warmup = check_int("MedianStop", "warmup", warmup, 1)
        self.start_step = check_int("MedianStop", "start_step", start_step, 1)
        self._completed = AppendLog()  # intermediate metrics of each completed model
        self._stopped: set[int] = set()

    def handle_event(self, event: ModelEvent) -> None:
        super().handle_event(event)
        if event.event_type is ModelEventType.IntermediateMetric:
            self._check(event.model)
        elif event.event_type is ModelEventType.TrainingEnd:
            self._stopped.discard(id(event.model))
            if event.model.status == ModelStatus.Trained:
                self._completed.append(_numbers(event.model))

    def _check(self, model: ExecutableModelSpace) -> None:
        if len(self._completed) < self.warmup or id(model) in self._stopped:  # type: ignore[operator]
            return
        history = _numbers(model)
        step = len(history)
        if step < self.start_step:  # type: ignore[operator]
            return
        averages = [statistics.fmean(h[:step]) for h in self._completed if len(h) >= step]
        if not averages:
            return
        median = statistics.median(averages)
        if max(history) < median:
            _logger.info("MedianStop: model %s is at best %.6g after %d steps, below the median %.6g; stopping it.",
                         model.model_id, max(history), step, median)
            self._stopped.add(id(model))
            self.engine.cancel_models(model)

    def state_dict(self) -> dict[str, Any]:
        return {"completed": self._completed}  # a completed model's curve is never changed

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._completed = AppendLog([float(v) for v in h] for h in state.get("completed", []))

    def __repr__(self) -> str:
        return f"MedianStop(warmup={self.warmup}, start_step={self.start_step})"


def _numbers(model: ExecutableModelSpace) -> list[float]:
    """The model's intermediate metrics as scores (negated when its evaluator minimizes)."""
    direction = model.metric_direction
    return [v for v in (metric_score(m, direction) for m in model.metrics.intermediates) if v is not None]
