"""``CrossGraphOptimization``: merge graph-format models that share their data into one trial.

Submitted models wait up to ``batch_waiting_time`` seconds. The queue is planned as a whole
(``logical_plan``): models whose evaluators read the same data (same dataloaders or datamodule and
trainer settings) share one input, same-architecture models among them form batch groups, and
each input's models are cut into trials of up to ``max_concurrency_cgo``; each trial of several
models runs as one ``MergedTrial``. Its per-model metrics fan out to the original models. If a
merged trial fails, each of its models is re-run alone, and only a model that fails alone ends
Failed.

``batching``: ``True`` (default) batches same-architecture models placed on a GPU; on CPU they
train merged without batching, which measured as fast or faster there (``benchmarks/cgo_batching.py``:
vmapped products and grouped convolutions gain nothing on CPU); ``"always"`` batches on CPU too;
``False`` turns operator batching off (input deduplication only).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from nasflow.space import ExecutableModelSpace, ModelStatus

from ..budget import Budget
from ..engine import Middleware
from ..event import FinalMetricEvent, IntermediateMetricEvent, ModelEvent, TrainingEndEvent, TrainingStartEvent
from ..sequential import NO_FINAL_METRIC
from .logical_plan import LogicalPlan, data_signature, optimize
from .merged import MergedTrial

__all__ = ["CrossGraphOptimization"]

_logger = logging.getLogger(__name__)


class CrossGraphOptimization(Middleware):
    """The ``'cgo'`` engine: a middleware over the training-service engine.

    ``max_model_count`` bounds the number of *models* (a merged trial trains several).
    """

    def __init__(self, engine: Any = None, *, max_concurrency_cgo: int | None = None,
                 batch_waiting_time: float = 60.0, max_model_count: int | None = None,
                 batching: bool | str = True) -> None:
        super().__init__(engine)
        if max_concurrency_cgo is not None and max_concurrency_cgo < 1:
            raise ValueError(f"max_concurrency_cgo must be at least 1, got {max_concurrency_cgo}.")
        self.max_concurrency_cgo = max_concurrency_cgo
        self.batch_waiting_time = batch_waiting_time
        if batching not in (True, False, "always"):
            raise ValueError(f"batching must be True, False or 'always', got {batching!r}.")
        self.batching = batching
        self.budget = Budget(max_model_count)  # counts models: a merged trial trains several
        self._models: list[ExecutableModelSpace] = []
        self._queue: list[tuple[float, ExecutableModelSpace]] = []
        self._merged: dict[int, MergedTrial] = {}  # id(MergedTrial) -> trial
        self._lock = threading.RLock()  # stop() calls in from another thread than the strategy's

    # ---- submission and grouping ------------------------------------------------------------
    def submit_models(self, *models: ExecutableModelSpace) -> None:
        with self._lock:
            now = time.monotonic()
            for model in models:
                self.engine.assign_model_id(model)
                if model not in self._models:
                    self._models.append(model)
                    self.budget.count_trial()
                if data_signature(model) is None:  # its evaluator cannot share data: it runs alone
                    self.engine.submit_models(model)
                else:
                    self._queue.append((now, model))
            self._flush()

    @property
    def _group_limit(self) -> int:
        return self.max_concurrency_cgo or max(2, getattr(self.engine, "trial_concurrency", 1))

    def _flush(self, partial: bool = False, force: bool = False) -> None:
        """Plan the queue and launch its trials: full ones at once; with ``partial`` (the strategy is
        waiting, so no more models are coming now) those whose oldest model waited
        ``batch_waiting_time``; with ``force`` every one. Once the model budget is spent no model
        can join a trial, so every trial launches at once."""
        if not self._queue:
            return
        force = force or not self.budget.available()
        now = time.monotonic()
        queued = self._queue  # oldest first: plan index order is submission order
        self._queue = []
        plan = optimize(LogicalPlan.from_models([model for _, model in queued]), batching=bool(self.batching))
        since = {id(model): at for at, model in queued}
        for trial in plan.trials(self._group_limit):
            oldest = min(since[id(m)] for m in trial.models)
            full = len(trial.models) >= self._group_limit or trial.inputs[0].signature is None
            waited = partial and now - oldest >= self.batch_waiting_time
            if full or waited or force:
                self._launch(trial)
            else:
                self._queue.extend((since[id(m)], m) for m in trial.models)
        self._queue.sort(key=lambda entry: entry[0])

    def _launch(self, plan: LogicalPlan) -> None:
        if len(plan.models) == 1:
            self.engine.submit_models(plan.models[0])
            return
        trial = MergedTrial(plan, batch_on_cpu=self.batching == "always")
        self._merged[id(trial)] = trial
        _logger.info("CGO: models %s train as one merged trial%s.", [m.model_id for m in plan.models],
                     f" (batched: {[[plan.models[i].model_id for i in g] for g in trial.batch_groups]})"
                     if trial.batch_groups else "")
        self.engine.submit_models(trial)

    # ---- events -----------------------------------------------------------------------------
    def handle_event(self, event: ModelEvent) -> None:
        with self._lock:
            self._handle(event)

    def _handle(self, event: ModelEvent) -> None:
        trial = self._merged.get(id(event.model))
        if trial is None:
            super().handle_event(event)
            return
        models = trial.models
        if isinstance(event, TrainingStartEvent):
            info = {**(event.info or {}), "merged_with": [m.model_id for m in models]}
            for model in models:
                self.dispatch_model_event(TrainingStartEvent(model, info))
        elif isinstance(event, (IntermediateMetricEvent, FinalMetricEvent)):
            from nasflow.evaluator.multi_model import split_multi_model_metric

            for model, value in zip(models, split_multi_model_metric(event.metric, len(models)), strict=True):
                self.dispatch_model_event(type(event)(model, value))
        elif isinstance(event, TrainingEndEvent):
            del self._merged[id(trial)]
            self._end_merged(trial, event)

    def _end_merged(self, trial: MergedTrial, event: TrainingEndEvent) -> None:
        if event.status == ModelStatus.Trained:
            for model in trial.models:
                ok = model.metrics.final is not None
                self.dispatch_model_event(TrainingEndEvent(model, ModelStatus.Trained if ok else ModelStatus.Failed,
                                                           None if ok else NO_FINAL_METRIC))
        elif event.status == ModelStatus.Interrupted:
            for model in trial.models:
                self.dispatch_model_event(TrainingEndEvent(model, ModelStatus.Interrupted, event.error))
        else:  # the merged trial failed: every model gets its own chance, alone
            _logger.warning("CGO: merged trial of models %s failed; re-running each alone. Reason: %s",
                            [m.model_id for m in trial.models], (event.error or "").strip().splitlines()[-1:])
            for model in trial.models:
                model.status = ModelStatus.Retrying
                model.metrics.clear()
                self.engine.submit_models(model)

    # ---- the rest of the engine interface ---------------------------------------------------
    def budget_available(self) -> bool:
        return self.budget.available() and self.engine.budget_available()

    def idle_worker_available(self) -> bool:
        """Idle while the next group is still filling up, so the strategy keeps submitting."""
        with self._lock:
            self._flush()
            return len(self._queue) < self._group_limit and (bool(self._queue) or self.engine.idle_worker_available())

    def wait_models(self, *models: ExecutableModelSpace, timeout: float | None = None, wait_all: bool = False) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        targets = list(models)
        while True:
            with self._lock:
                running = self._has_running()
                self._flush(partial=True, force=not running and not self.budget_available())
                running = running or self._has_running()
                if targets:
                    done = [m.status.completed() for m in targets]
                    if all(done) or (not wait_all and any(done)):
                        return
                elif not self._queue and not running:
                    return
                step = self._until_due() if self._queue else 1.0
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            step = max(0.05, min(step, 1.0))
            if running:
                self.engine.wait_models(timeout=step)
            else:  # nothing runs below, so the engine would return at once: sleep until the queue is due
                time.sleep(step)
            with self._lock:
                queue_empty = not self._queue
            if not targets and not wait_all and queue_empty:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return

    def _until_due(self) -> float:
        """Seconds until the oldest queued model has waited ``batch_waiting_time``."""
        oldest = min(entry[0] for entry in self._queue)
        return max(0.0, oldest + self.batch_waiting_time - time.monotonic())

    def _has_running(self) -> bool:
        return any(not m.status.completed() for m in self.engine.list_models())

    def list_models(self, status: ModelStatus | None = None) -> Iterable[ExecutableModelSpace]:
        return [m for m in self._models if status is None or m.status == status]

    def cancel_models(self, *models: ExecutableModelSpace) -> None:
        """Queued models end here; running ones are cancelled below. The engine below is called
        without holding this middleware's lock: it dispatches events into us under its own lock."""
        wanted = {id(m) for m in models}
        with self._lock:
            queued = [e for e in self._queue if id(e[1]) in wanted]
            for entry in queued:
                self._queue.remove(entry)
            hit = [t for t in self._merged.values() if any(id(m) in wanted for m in t.models)]
        for _, model in queued:
            self.dispatch_model_event(TrainingEndEvent(model, ModelStatus.Interrupted, "cancelled before it ran"))
        solo = [m for m in models if m in self.engine.list_models()]
        if hit or solo:
            self.engine.cancel_models(*hit, *solo)

    def shutdown(self) -> None:
        with self._lock:
            for _, model in self._queue:
                self.dispatch_model_event(TrainingEndEvent(model, ModelStatus.Interrupted, "experiment ended"))
            self._queue.clear()
        super().shutdown()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.budget.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.budget.load_state_dict(state)
