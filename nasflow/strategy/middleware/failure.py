"""``FailureHandler``: retry failed models, or give them a metric the strategy can learn from."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from nasflow.execution import FinalMetricEvent, ModelEvent, TrainingEndEvent
from nasflow.runtime import MetricValue, normalize_metric
from nasflow.space import ExecutableModelSpace, ModelStatus

from ..utils import check_int
from .base import StrategyMiddleware

__all__ = ["FailureHandler"]

_logger = logging.getLogger(__name__)

_FAILURES = (ModelStatus.Failed, ModelStatus.Interrupted, ModelStatus.Invalid)


class FailureHandler(StrategyMiddleware):
    """Handles models that end with one of ``failure_types``.

    - ``retry_patience=n``: the model is run again, up to ``n`` more times. Meanwhile its status is
      Retrying and the layers above hear nothing of the failure; only the last attempt's end
      reaches them. A retry is submitted when a worker is free and counts against the budget;
      when the budget is spent, the failure is passed on as it is.
    - ``metric=m``: a model that still fails gets ``m`` as its final metric (its status stays), so
      a learning strategy is told the region is bad instead of learning nothing.

    Set either or both (retries first, then the metric). With the sequential engine, pass
    ``continue_on_failure=True`` so a failure reaches this handler rather than stopping the run.
    """

    def __init__(self, metric: MetricValue | None = None,
                 failure_types: Iterable[ModelStatus] = (ModelStatus.Failed,),
                 retry_patience: int | None = None) -> None:
        super().__init__()
        if metric is None and retry_patience is None:
            raise ValueError(
                "FailureHandler needs retry_patience=N (run a failed model up to N more times) and/or "
                "metric=M (give a failed model the metric M); set at least one."
            )
        self.metric = None if metric is None else normalize_metric(metric)
        self.retry_patience = check_int("FailureHandler", "retry_patience", retry_patience, 1, allow_none=True)
        types = (failure_types,) if isinstance(failure_types, (str, ModelStatus)) else tuple(failure_types)
        try:
            self.failure_types = tuple(ModelStatus(t) for t in types)
        except ValueError as err:
            raise ValueError(f"FailureHandler: failure_types must be ModelStatus values, got {types!r}.") from err
        wrong = [t for t in self.failure_types if t not in _FAILURES]
        if wrong or not self.failure_types:
            raise ValueError(
                f"FailureHandler: failure_types must be a non-empty subset of {[t.name for t in _FAILURES]} "
                f"(statuses a model ends with, other than Trained), got {[t.name for t in self.failure_types]}."
            )
        self._attempts: dict[int, tuple[ExecutableModelSpace, int]] = {}  # retries so far, per model
        self._queue: list[TrainingEndEvent] = []  # failures waiting for a retry

    def handle_event(self, event: ModelEvent) -> None:
        if not isinstance(event, TrainingEndEvent):
            super().handle_event(event)
            return
        model = event.model
        if event.status not in self.failure_types:
            self._attempts.pop(id(model), None)
            super().handle_event(event)
            return
        retries = self._attempts.get(id(model), (model, 0))[1]
        if self.retry_patience is not None and retries < self.retry_patience:
            self._attempts[id(model)] = (model, retries + 1)
            _logger.info("Model %s ended %s; retry %d of %d queued.", model.model_id, event.status.value,
                         retries + 1, self.retry_patience)
            model.status = ModelStatus.Retrying
            model.metrics.clear()
            self._queue.append(event)
            return
        self._give_up(event)

    def _give_up(self, event: TrainingEndEvent) -> None:
        """Pass the failure up for good (with the metric, if one is set)."""
        self._attempts.pop(id(event.model), None)
        event.model.status = event.status
        if self.metric is not None:
            self.dispatch_model_event(FinalMetricEvent(event.model, self.metric))
        super().handle_event(event)

    def _flush(self) -> None:
        """Submit queued retries while workers are free; give them up when the budget is spent."""
        while self._queue:
            if not self.engine.budget_available():
                queued, self._queue = self._queue, []
                _logger.info("Budget spent: %d queued retries are given up.", len(queued))
                for event in queued:
                    self._give_up(event)
                return
            if not self.engine.idle_worker_available():
                return
            self.engine.submit_models(self._queue.pop(0).model)

    def submit_models(self, *models: ExecutableModelSpace) -> None:
        self.engine.submit_models(*models)
        self._flush()

    def idle_worker_available(self) -> bool:
        self._flush()
        return self.engine.idle_worker_available()

    def wait_models(self, *models: ExecutableModelSpace, timeout: float | None = None, wait_all: bool = False) -> None:
        self._flush()
        self.engine.wait_models(*models, timeout=timeout, wait_all=wait_all)
        while wait_all and timeout is None and self._queue:  # failures of the last runs still to retry
            self._flush()
            self.engine.wait_models(*models, wait_all=True)

    def __repr__(self) -> str:
        return f"FailureHandler(metric={self.metric}, retry_patience={self.retry_patience})"
