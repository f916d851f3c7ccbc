"""``Filter``: models a check rejects are not run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nasflow.runtime import MetricValue, normalize_metric
from nasflow.space import ExecutableModelSpace, ModelStatus

from ..utils import check_int
from .base import StrategyMiddleware

__all__ = ["Filter"]

_logger = logging.getLogger(__name__)


class Filter(StrategyMiddleware):
    """Runs only the models ``filter_fn(model)`` accepts; the others end Invalid at once.

    Useful for cheap checks (a parameter count limit, a latency predictor) that save training.
    ``metric_for_invalid`` gives rejected models a metric, so that a learning strategy is steered
    away from them rather than left without feedback. After ``patience`` rejections in a row the
    budget is reported spent, which stops a strategy that only proposes rejected models.
    """

    def __init__(self, filter_fn: Callable[[ExecutableModelSpace], bool],
                 metric_for_invalid: MetricValue | None = None, patience: int = 1000) -> None:
        super().__init__()
        if not callable(filter_fn):
            raise TypeError(f"Filter: filter_fn must be a callable (model -> bool), got {filter_fn!r}.")
        self.filter_fn = filter_fn
        self.metric_for_invalid = None if metric_for_invalid is None else normalize_metric(metric_for_invalid)
        self.patience = check_int("Filter", "patience", patience, 1)
        self._rejected_in_a_row = 0
        self._rejected_total = 0
        self._warned = False

    def submit_models(self, *models: ExecutableModelSpace) -> None:
        accepted = []
        for model in models:
            if self.filter_fn(model):
                self._rejected_in_a_row = 0
                accepted.append(model)
                continue
            self._rejected_in_a_row += 1
            self._rejected_total += 1
            _logger.debug("Filter rejected %r.", model)
            self.end_model_here(model, ModelStatus.Invalid, "rejected by Filter", self.metric_for_invalid)
        if accepted:
            self.engine.submit_models(*accepted)

    def budget_available(self) -> bool:
        if self._rejected_in_a_row >= self.patience:  # type: ignore[operator]
            if not self._warned:
                self._warned = True
                _logger.warning("Filter rejected %d models in a row (patience); reporting the budget spent.",
                                self._rejected_in_a_row)
            return False
        return self.engine.budget_available()

    def state_dict(self) -> dict[str, Any]:
        return {"rejected_in_a_row": self._rejected_in_a_row, "rejected_total": self._rejected_total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rejected_in_a_row = int(state.get("rejected_in_a_row", 0))
        self._rejected_total = int(state.get("rejected_total", 0))

    def __repr__(self) -> str:
        name = getattr(self.filter_fn, "__qualname__", repr(self.filter_fn))
        return f"Filter({name}, metric_for_invalid={self.metric_for_invalid})"
