"""``SequentialExecutionEngine``: runs each model in the calling process, one at a time.

For one-shot strategies (whose raw-format models cannot leave the process) and for debugging:
a breakpoint in an evaluator just works.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Iterable
from typing import Any

from nasflow.runtime import MetricValue, trial_context
from nasflow.space import ExecutableModelSpace, ModelStatus

from .budget import Budget
from .engine import ExecutionEngine
from .event import FinalMetricEvent, IntermediateMetricEvent, TrainingEndEvent, TrainingStartEvent

__all__ = ["SequentialExecutionEngine", "TrialInterrupted", "NO_FINAL_METRIC"]

_logger = logging.getLogger(__name__)

NO_FINAL_METRIC = "The evaluator returned without calling nasflow.report_final_result; report the model's metric."


class TrialInterrupted(BaseException):
    """Raised inside a running evaluator (at its next report) when its model was cancelled."""


class _CallbackError(BaseException):
    """Carries an event callback's exception through the evaluator (``__cause__``), so that a
    strategy's bug is not recorded as the model's failure, whatever the evaluator catches."""


class SequentialExecutionEngine(ExecutionEngine):
    """Runs models in process as they are submitted.

    ``max_model_count`` / ``max_duration`` (seconds) bound the budget; with
    ``continue_on_failure=False`` a failing model re-raises its error after it is marked Failed.
    """

    runs_in_process = True

    def __init__(self, max_model_count: int | None = None, max_duration: float | None = None,
                 continue_on_failure: bool = False) -> None:
        super().__init__()
        self.budget = Budget(max_model_count, max_duration)
        self.continue_on_failure = continue_on_failure
        self._models: list[ExecutableModelSpace] = []
        self._cancelled: set[int] = set()

    def budget_available(self) -> bool:
        return self.budget.available()

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
            self.budget.count_trial()
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
            try:
                self.dispatch_model_event(event)
            except BaseException as err:  # a callback's (strategy's, store's) error, not the evaluator's
                raise _CallbackError() from err

        error: BaseException | None = None
        status, reason = ModelStatus.Trained, None
        try:
            with trial_context(emit, str(model.model_id)) as context:
                model.execute()
            if not context.final_reported:
                status, reason = ModelStatus.Failed, NO_FINAL_METRIC
        except TrialInterrupted:
            status, reason = ModelStatus.Interrupted, "cancelled while running"
        except _CallbackError as wrapped:  # the engine's caller failed: raise it as the TS engine would
            self._cancelled.discard(id(model))
            assert wrapped.__cause__ is not None
            raise wrapped.__cause__ from None
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
        return {**super().state_dict(), **self.budget.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.budget.load_state_dict(state)
