"""``RecordingMiddleware``: writes every submission and event to the store before anyone sees it.

It is the outermost engine layer the strategy talks to, so "written before the strategy sees it"
holds by construction: it records, then passes the event up.

One commit per event: the writes of an event (a status with its trial, a metric) commit together in
one ``store.batch()``. A submission's saved strategy progress and then the new model's row are written
before the engine gets the model, except under an engine that runs models inside ``submit_models``
(sequential), where nothing of the model leaves the process before its first event: there both commit
with that event (its start), or when ``submit_models`` returns, whichever comes first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from nasflow.execution import (
    FinalMetricEvent,
    IntermediateMetricEvent,
    Middleware,
    ModelEvent,
    TrainingEndEvent,
    TrainingStartEvent,
)
from nasflow.space import ExecutableModelSpace, ModelStatus

from .store import ExperimentStore

__all__ = ["RecordingMiddleware", "model_payload", "format_name"]

_logger = logging.getLogger(__name__)


def format_name(model: ExecutableModelSpace) -> str:
    name = type(model).__name__
    return {"RawFormatModelSpace": "raw", "SimplifiedModelSpace": "simplified"}.get(name, "graph")


def model_payload(model: ExecutableModelSpace) -> bytes | None:
    """What a model's row keeps besides its sample: a graph-format model's IR as JSON (readers generate
    its code from it without unpickling anything), else nothing. Resume rebuilds every model from its
    sample and the setup's space, which holds the evaluator once per experiment: a pickle of the model
    in each row copied the evaluator, and every module-level object it names, once per trial."""
    if format_name(model) == "graph" and hasattr(model, "to_payload"):
        return model.to_payload()
    return None


class RecordingMiddleware(Middleware):
    """Assigns model ids from the store, records models and events, keeps restored models listed."""

    def __init__(self, store: ExperimentStore, *, on_submit: Callable[[], None] | None = None,
                 on_model_end: Callable[[], None] | None = None,
                 restored: Iterable[ExecutableModelSpace] = ()) -> None:
        super().__init__()
        self.store = store
        self.on_submit = on_submit
        self.on_model_end = on_model_end
        self.stopped = False
        self.cut_short_ids: set[int] = set()  # models the end of the run cut short (see note_cut_short)
        self._outside = list(restored)  # models the engine below does not list (restored, ended above)
        self._searching: dict[int, dict[str, Any]] = {}  # models submitted without a sample: the sample recorded
        self._lock = threading.RLock()  # ids and unwritten rows; held while writing (events come from threads)
        self._unsaved = False  # a submission's progress (on_submit) waits for the next write, see _writing
        self._unwritten: list[tuple[int, dict[str, Any], str, bytes | None]] = []  # new rows, see _writing
        records = store.models(include_payload=False)
        self._next_id = max((r.model_id for r in records), default=-1) + 1

    def _add(self, model: ExecutableModelSpace) -> bool:
        """Give a new model an id and a row in the store; False if it already has both."""
        with self._lock:
            if model.sample is None and model.model_id not in self._searching:
                # A search run (one-shot) is submitted before it has an architecture; its sample follows
                # the architecture it reports as its best (see _sync_sample).
                self._searching[model.model_id if model.model_id is not None else self._next_id] = {}
            if model.model_id is not None:
                self._next_id = max(self._next_id, model.model_id + 1)
                return False
            model.model_id = self._next_id
            self._next_id += 1
            self._unwritten.append((model.model_id, model.sample or {}, format_name(model), model_payload(model)))
            return True

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One store transaction: the strategy's progress for submissions not saved yet, the rows of new
        models not written yet, then the body's writes."""
        with self._lock, self.store.batch():
            if self._unsaved:
                self.on_submit()  # type: ignore[misc]  # only set when there is one
            for model_id, sample, fmt, payload in self._unwritten:
                self.store.add_model(model_id, sample, format=fmt, payload=payload, status=ModelStatus.Frozen.value)
            yield
        self._unsaved = False  # committed (a failed batch keeps it for the next write)
        self._unwritten.clear()

    def _write_new_rows(self) -> None:
        with self._lock:
            if self._unsaved or self._unwritten:
                with self._writing():
                    pass

    def assign_model_id(self, model: ExecutableModelSpace) -> int:
        self._add(model)
        self._write_new_rows()
        return model.model_id  # type: ignore[return-value]

    def record_ended_model(self, model: ExecutableModelSpace, reason: str | None = None) -> None:
        self._add(model)
        assert model.model_id is not None
        with self._writing():
            if model.metrics.final is not None:
                self.store.set_final(model.model_id, model.metrics.final)
            self.store.set_status(model.model_id, model.status.value, reason)
        self._outside.append(model)

    def submit_models(self, *models: ExecutableModelSpace) -> None:
        """Record each model, then hand them all to the engine.

        ``on_submit`` (the strategy's saved progress) runs before the model's row is written: a crash
        in between loses one sample the strategy drew, where the other order would run it twice. Under
        an in-process engine both are deferred to the model's first event and commit with it, at once.
        """
        in_process = self.engine.runs_in_process
        for model in models:
            if self.on_submit is not None:
                if in_process:
                    with self._lock:
                        self._unsaved = True
                else:
                    self.on_submit()
            if not self._add(model):  # a model resubmitted (resume, retry) keeps its id and row
                status = ModelStatus.Retrying if model.status == ModelStatus.Retrying else ModelStatus.Frozen
                with self._writing():
                    self.store.clear_final(model.model_id)  # type: ignore[arg-type]  # as the engine clears its metrics
                    self.store.set_status(model.model_id, status.value)  # type: ignore[arg-type]
            elif not in_process:
                self._write_new_rows()
        try:
            self.engine.submit_models(*models)
        finally:
            self._write_new_rows()  # models the engine did not start (budget spent) or failed to

    def budget_available(self) -> bool:
        return not self.stopped and self.engine.budget_available()

    def note_cut_short(self) -> list[ExecutableModelSpace]:
        """The run is ending (a stop, a failure): the models not finished now are cut short by that, not
        ended by a strategy's decision, so a resume runs them again. Returns them; their ids are kept
        in ``cut_short_ids``. Call it before the engine is shut down (which cancels them)."""
        unfinished = [m for m in self.engine.list_models() if not m.status.completed()]
        self.cut_short_ids.update(m.model_id for m in unfinished if m.model_id is not None)
        return unfinished

    def stop(self) -> None:
        """No more submissions; running and queued models are cancelled (they end Interrupted, and are
        noted as cut short)."""
        self.stopped = True
        unfinished = self.note_cut_short()
        if unfinished:
            self.engine.cancel_models(*unfinished)

    def handle_event(self, event: ModelEvent) -> None:
        self._record(event)
        super().handle_event(event)
        if isinstance(event, TrainingEndEvent) and self.on_model_end is not None:
            self.on_model_end()

    def _record(self, event: ModelEvent) -> None:
        model_id = event.model.model_id
        if model_id is None:
            _logger.warning("Event %s for a model without id is not recorded.", type(event).__name__)
            return
        with self._writing():
            if isinstance(event, TrainingStartEvent):
                info = event.info or {}
                if info.get("trial_id") is not None:
                    self.store.set_trial([model_id], str(info["trial_id"]), info.get("log_path"))
                self.store.set_status(model_id, ModelStatus.Training.value)
            elif isinstance(event, IntermediateMetricEvent):
                self._sync_sample(event.model)
                self.store.add_intermediate(model_id, event.metric)
            elif isinstance(event, FinalMetricEvent):
                self._sync_sample(event.model)
                self.store.set_final(model_id, event.metric)
            elif isinstance(event, TrainingEndEvent):
                self.store.set_status(model_id, event.status.value, event.error)

    def _sync_sample(self, model: ExecutableModelSpace) -> None:
        recorded = self._searching.get(model.model_id)  # type: ignore[arg-type]
        if recorded is not None and model.sample is not None and model.sample != recorded:
            self.store.set_sample(model.model_id, model.sample)  # type: ignore[arg-type]
            self._searching[model.model_id] = dict(model.sample)  # type: ignore[index]

    def list_models(self, status: ModelStatus | None = None) -> Iterable[ExecutableModelSpace]:
        live = list(self.engine.list_models(status))
        live_ids = {m.model_id for m in live}
        old = [m for m in self._outside if (status is None or m.status == status) and m.model_id not in live_ids]
        return old + live

    def state_dict(self) -> dict[str, Any]:
        return {"engine": self.engine.state_dict()}
