"""``TrainingServiceExecutionEngine``: keeps up to ``trial_concurrency`` trials running on a
``TrainingService`` and turns the trial events it streams back into model events.

Events are pumped by whichever thread calls into the engine (the strategy's, normally), so
callbacks never race with the strategy; a lock makes calls from other threads (``stop()``) safe.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cloudpickle

from nasflow.runtime import clean_exit, current_trial
from nasflow.runtime.journal import TrialJournal
from nasflow.space import ExecutableModelSpace, ModelStatus, RawFormatModelSpace, SimplifiedModelSpace
from nasflow.training_service import TrainingService, TrialEvent, TrialSpec

from .budget import Budget
from .engine import ExecutionEngine
from .event import FinalMetricEvent, IntermediateMetricEvent, TrainingEndEvent, TrainingStartEvent
from .sequential import NO_FINAL_METRIC

__all__ = ["TrainingServiceExecutionEngine", "trial_payload", "refuse_raw", "shareable"]

_logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.05


def refuse_raw(model: ExecutableModelSpace) -> None:
    """Raw-format models cannot travel; say so when they are submitted, not when a worker fails."""
    if isinstance(model, RawFormatModelSpace):
        raise TypeError(
            "A raw-format model cannot leave this process (its weights live here), so the training-service "
            "engine cannot run it. Use NasExperimentConfig('ts', 'simplified') or the 'sequential' engine."
        )


def trial_payload(model: ExecutableModelSpace, trial_dir: str | None = None) -> bytes:
    """The bytes a worker runs: the frozen model's ``execute`` (model + evaluator), by cloudpickle.

    ``trial_dir`` is the trial's folder; the trial context carries it to the evaluator, which keeps
    the trial's files (Lightning logs, checkpoints) there rather than in the working directory.
    """
    refuse_raw(model)
    return cloudpickle.dumps(functools.partial(_execute, shareable(model), trial_dir))


def _execute(model: ExecutableModelSpace, trial_dir: str | None = None) -> None:
    """The trial's body in the worker. With a trial folder, its reports are journaled there first (a
    resume ingests them should the experiment process die before it records them); a merged trial
    (several models, ``trial_name``) reports for its models together and keeps no journal."""
    context = current_trial()
    journal = None
    if context is not None and trial_dir is not None:
        context.trial_dir = trial_dir
        if not hasattr(model, "trial_name"):
            context.journal = journal = TrialJournal.open(trial_dir, model.model_id)
    try:
        model.execute()
    except BaseException as err:
        if journal is not None and not journal.undelivered and not clean_exit(err):
            journal.end_failed(traceback.format_exc())
        raise
    finally:
        if journal is not None:
            context.journal = None  # type: ignore[union-attr]
            journal.close()


def shareable(model: Any) -> Any:
    """``model``, or for a simplified model a stand-in that pickles to an equal model faster.

    Every model of a simplified space shares the space's constructor (its class, by value when it
    lives in ``__main__``, and init arguments); pickling it is most of the cost of pickling a model.
    The stand-in reuses the constructor's bytes, pickled once per space (a space does not change
    after it is built), and pickles only the evaluator, sample, id and status each time.
    """
    if isinstance(model, SimplifiedModelSpace):
        return _SharedConstructorModel(model)
    return model


class _SharedConstructorModel:
    __slots__ = ("model",)

    def __init__(self, model: SimplifiedModelSpace) -> None:
        self.model = model

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        m = self.model
        return _rebuild_simplified, (_constructor_bytes(m.constructor), m.evaluator, m.sample, m.model_id, m.status)


def _rebuild_simplified(constructor: bytes, evaluator: Any, sample: Any, model_id: int | None,
                        status: ModelStatus) -> SimplifiedModelSpace:
    model = SimplifiedModelSpace(cloudpickle.loads(constructor), evaluator, sample)
    model.model_id, model.status = model_id, status
    return model


_constructor_cache: collections.OrderedDict[int, tuple[Any, bytes]] = collections.OrderedDict()
_constructor_lock = threading.Lock()


def _constructor_bytes(constructor: Any, cache_size: int = 16) -> bytes:
    """The constructor's pickle, made once per constructor object (kept alive while cached)."""
    with _constructor_lock:
        hit = _constructor_cache.get(id(constructor))
        if hit is not None and hit[0] is constructor:
            _constructor_cache.move_to_end(id(constructor))
            return hit[1]
        data = cloudpickle.dumps(constructor)
        _constructor_cache[id(constructor)] = (constructor, data)
        while len(_constructor_cache) > cache_size:
            _constructor_cache.popitem(last=False)
        return data


class TrainingServiceExecutionEngine(ExecutionEngine):
    """Runs models as trials on ``training_service``.

    ``max_model_count`` / ``max_duration`` bound the budget (once the duration is spent, running
    trials are cancelled); ``trial_timeout`` (seconds) fails a trial that runs too long.
    """

    def __init__(self, training_service: TrainingService, *, trial_concurrency: int = 1,
                 max_model_count: int | None = None, max_duration: float | None = None,
                 trial_timeout: float | None = None, log_dir: str | Path | None = None,
                 trial_gpu_number: int = 0) -> None:
        super().__init__()
        self.service = training_service
        self.trial_concurrency = trial_concurrency
        self.budget = Budget(max_model_count, max_duration)
        self.trial_timeout, self.trial_gpu_number = trial_timeout, trial_gpu_number
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._models: list[ExecutableModelSpace] = []
        self._pending: collections.deque[ExecutableModelSpace] = collections.deque()
        self._running: dict[str, ExecutableModelSpace] = {}
        self._final_seen: set[str] = set()
        self._lock = threading.RLock()
        self._service_started = False
        self._shut = False

    # ---- budget -----------------------------------------------------------------------------
    def budget_available(self) -> bool:
        return not self._shut and self.budget.available()

    def idle_worker_available(self) -> bool:
        with self._lock:
            self._pump(0)
            busy = len(self._running) + len(self._pending)
            return busy < self.trial_concurrency and self._ensure_service().capacity() > 0

    # ---- submission -------------------------------------------------------------------------
    def submit_models(self, *models: ExecutableModelSpace) -> None:
        with self._lock:
            for model in models:
                refuse_raw(model)
                self.assign_model_id(model)
                if model not in self._models:
                    self._models.append(model)
                model.metrics.clear()
                self.budget.count_trial()
                self._pending.append(model)
            self._schedule()

    def _ensure_service(self) -> TrainingService:
        if not self._service_started:
            self.service.start()
            self._service_started = True
        return self.service

    def _schedule(self) -> None:
        service = self._ensure_service()
        while self._pending and len(self._running) < self.trial_concurrency and service.capacity() > 0:
            model = self._pending.popleft()
            trial_id = f"{getattr(model, 'trial_name', model.model_id)}-{uuid.uuid4().hex[:6]}"
            trial_dir = str(self.log_dir / f"trial-{trial_id}") if self.log_dir is not None else None
            log_path = f"{trial_dir}.log" if trial_dir is not None else None
            try:
                spec = TrialSpec(trial_id, trial_payload(model, trial_dir), self.trial_timeout, log_path,
                                 self.trial_gpu_number)
            except Exception as err:  # an unpicklable model fails alone, with the reason
                self.dispatch_model_event(TrainingEndEvent(model, ModelStatus.Failed,
                                                           f"The model could not be sent to a worker: {err!r}"))
                continue
            self._running[trial_id] = model
            service.submit(spec)

    # ---- events -----------------------------------------------------------------------------
    def _pump(self, timeout: float) -> bool:
        """Handle whatever the service reports within ``timeout``; True if a model completed."""
        if not self._service_started:
            return False
        if self.budget.duration_spent() and self._running:
            for trial_id in list(self._running):
                self.service.cancel(trial_id)
        completed = False
        for event in self.service.poll_events(timeout):
            completed |= self._handle(event)
        self._schedule()
        return completed

    def _handle(self, event: TrialEvent) -> bool:
        model = self._running.get(event.trial_id)
        if model is None:
            _logger.debug("Event for unknown trial %s ignored.", event.trial_id)
            return False
        if event.kind == "started":
            info = {"trial_id": event.trial_id, **(event.value or {})}
            self.dispatch_model_event(TrainingStartEvent(model, info))
        elif event.kind == "intermediate":
            self.dispatch_model_event(IntermediateMetricEvent(model, event.value))
        elif event.kind == "final":
            self._final_seen.add(event.trial_id)
            self.dispatch_model_event(FinalMetricEvent(model, event.value))
        elif event.kind == "end":
            del self._running[event.trial_id]
            status, error = self._end_status(event)
            self._final_seen.discard(event.trial_id)
            if model.status != ModelStatus.Training:  # never started: still say it trained nowhere
                self.dispatch_model_event(TrainingStartEvent(model, {"trial_id": event.trial_id}))
            self.dispatch_model_event(TrainingEndEvent(model, status, error))
            return True
        return False

    def _end_status(self, event: TrialEvent) -> tuple[ModelStatus, str | None]:
        if event.status == "succeeded":
            if event.trial_id in self._final_seen:
                return ModelStatus.Trained, None
            return ModelStatus.Failed, NO_FINAL_METRIC
        if event.status == "cancelled":
            return ModelStatus.Interrupted, event.error or "cancelled"
        if event.status == "timeout":
            return ModelStatus.Failed, event.error or f"the trial ran longer than its timeout ({self.trial_timeout}s)"
        return ModelStatus.Failed, event.error or "the trial failed"

    # ---- waiting, listing, stopping ----------------------------------------------------------
    def wait_models(self, *models: ExecutableModelSpace, timeout: float | None = None, wait_all: bool = False) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        targets = list(models)
        while True:
            with self._lock:
                if targets:
                    done = [m.status.completed() for m in targets]
                    if all(done) or (not wait_all and any(done)):
                        return
                elif not self._running and not self._pending:
                    return
                completed = self._pump(POLL_INTERVAL)
            if completed and not targets and not wait_all:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return

    def list_models(self, status: ModelStatus | None = None) -> Iterable[ExecutableModelSpace]:
        return [m for m in self._models if status is None or m.status == status]

    def cancel_models(self, *models: ExecutableModelSpace) -> None:
        with self._lock:
            wanted = {id(m) for m in models}
            for model in [m for m in self._pending if id(m) in wanted]:
                self._pending.remove(model)
                self.dispatch_model_event(TrainingEndEvent(model, ModelStatus.Interrupted, "cancelled before it ran"))
            for trial_id, model in list(self._running.items()):
                if id(model) in wanted:
                    self.service.cancel(trial_id)

    def shutdown(self) -> None:
        with self._lock:
            if self._shut:
                return
            self._shut = True
            if self._service_started:
                for trial_id in list(self._running):
                    self.service.cancel(trial_id)
                deadline = time.monotonic() + 5.0
                while self._running and time.monotonic() < deadline:
                    for event in self.service.poll_events(POLL_INTERVAL):
                        self._handle(event)
                self.service.shutdown()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.budget.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.budget.load_state_dict(state)
