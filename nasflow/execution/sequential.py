"""``SequentialExecutionEngine``: runs each model in the calling process, one at a time.

For one-shot strategies (whose raw-format models cannot leave the process) and for debugging:
a breakpoint in an evaluator just works.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Iterable
from typing import Any

from nasflow.runtime import MetricValue, trial_context
from nasflow.space import ExecutableModelSpace, ModelStatus

from .engine import ExecutionEngine
from .event import FinalMetricEvent, IntermediateMetricEvent, TrainingEndEvent, TrainingStartEvent

__all__ = ["SequentialExecutionEngine", "TrialInterrupted", "NO_FINAL_METRIC"]

_logger = logging.getLogger(__name__)

NO_FINAL_METRIC = "The evaluator returned without calling nasflow.report_final_result; report the model's metric."


class TrialInterrupted(BaseException):
    """Raised inside a running evaluator (at its next report) when its model was cancelled."""


class SequentialExecutionEngine(ExecutionEngine):
    """Runs models in process as they are submitted.

    ``max_model_count`` / ``max_duration`` (seconds) bound the budget; with
    ``continue_on_failure=False`` a failing model re-raises its error after it is marked Failed.
    """

    def __init__(self, max_model_count: int | None = None, max_duration: float | None = None,
                 continue_on_failure: bool = False) -> None:
        super().__init__()
        self.max_model_count = max_model_count
        self.max_duration = max_duration
        self.continue_on_failure = continue_on_failure
        self._models: list[ExecutableModelSpace] = []
        self._elapsed_before = 0.0
        self._started_at = time.monotonic()
        self._cancelled: set[int] = set()
        self._count_before = 0  # trials run before a restart, which count against max_model_count
        self._trials = 0  # every run counts, a retried model's too

    def elapsed(self) -> float:
        return self._elapsed_before + time.monotonic() - self._started_at

    def budget_available(self) -> bool:
        if self.max_model_count is not None and self._count_before + self._trials >= self.max_model_count:
            return False
        return self.max_duration is None or self.elapsed() < self.max_duration

    def idle_worker_available(self) -> bool:
        return True

    def list_models(self, status: ModelStatus | None = None) -> Iterable[ExecutableModelSpace]:
        return [m for m in self._models if status is None or m.status == status]

    def wait_models(self, *models: ExecutableModelSpace, timeout: float | None = None, wait_all: bool = False) -> None:
        return None  # every model has completed by the time submit_models returns

    def submit_models(self, *models: ExecutableModelSpace) -> None:
        for model in models:
            if not self.budget_available():
                _logger.warning("Budget exhausted; model %s is not run.", model.model_id)
                return
            self.assign_model_id(model)
            if model not in self._models:
                self._models.append(model)
            self._trials += 1
            self._run(model)

    def cancel_models(self, *models: ExecutableModelSpace) -> None:
        """Interrupt running models at their next report."""
        self._cancelled.update(id(m) for m in models if m.status == ModelStatus.Training)

    def _run(self, model: ExecutableModelSpace) -> None:
        self.dispatch_model_event(TrainingStartEvent(model, {"pid": os.getpid(), "engine": "sequential"}))

        def emit(kind: str, value: MetricValue) -> None:
            if id(model) in self._cancelled:
                raise TrialInterrupted()
            event = IntermediateMetricEvent(model, value) if kind == "intermediate" else FinalMetricEvent(model, value)
            self.dispatch_model_event(event)

        error: BaseException | None = None
        status, reason = ModelStatus.Trained, None
        try:
            with trial_context(emit, str(model.model_id)) as context:
                model.execute()
            if not context.final_reported:
                status, reason = ModelStatus.Failed, NO_FINAL_METRIC
        except TrialInterrupted:
            status, reason = ModelStatus.Interrupted, "cancelled while running"
        except Exception as err:  # an evaluator's failure is the model's, not the engine's
            status, reason, error = ModelStatus.Failed, traceback.format_exc(), err
        finally:
            self._cancelled.discard(id(model))
        self.dispatch_model_event(TrainingEndEvent(model, status, reason))
        if error is not None and not self.continue_on_failure:
            raise RuntimeError(
                f"Model {model.model_id} failed (set continue_on_failure=True to go on): {error!r}"
            ) from error

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "model_count": self._count_before + self._trials,
                "elapsed": self.elapsed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._elapsed_before = float(state.get("elapsed", 0.0))
        self._count_before = int(state.get("model_count", 0))
        self._started_at = time.monotonic()
