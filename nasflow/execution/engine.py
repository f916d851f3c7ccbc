"""``ExecutionEngine``: runs submitted models and reports their events; ``Middleware`` wraps one."""

from __future__ import annotations

import abc
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from nasflow.space import ExecutableModelSpace, ModelStatus

from .event import ModelEvent, ModelEventType

__all__ = ["ExecutionEngine", "Middleware", "EventCallback"]

_logger = logging.getLogger(__name__)

EventCallback = Callable[[ModelEvent], None]


class ExecutionEngine(abc.ABC):
    """Runs models. Strategies submit models and learn their fate through event callbacks.

    Events are delivered in order per model (start, intermediates, final, end); the event's own
    bookkeeping (metrics, status) is applied before the first callback runs, and callbacks run in
    the order they were registered.
    """

    # True when submit_models runs each model to its end in the calling process before returning:
    # nothing of a model leaves the process before its first event.
    runs_in_process = False

    def __init__(self) -> None:
        self._callbacks: dict[ModelEventType, list[EventCallback]] = defaultdict(list)
        self._next_model_id = 0

    # ---- what an engine does ----------------------------------------------------------------
    @abc.abstractmethod
    def submit_models(self, *models: ExecutableModelSpace) -> None:
        """Start (or queue) frozen models; returns at once unless the engine runs in process."""

    @abc.abstractmethod
    def list_models(self, status: ModelStatus | None = None) -> Iterable[ExecutableModelSpace]:
        """Models submitted so far, optionally only those with ``status``."""

    @abc.abstractmethod
    def idle_worker_available(self) -> bool:
        """Whether a submitted model would start now."""

    @abc.abstractmethod
    def budget_available(self) -> bool:
        """Whether more models may be submitted (trial count and duration limits)."""

    @abc.abstractmethod
    def wait_models(self, *models: ExecutableModelSpace, timeout: float | None = None, wait_all: bool = False) -> None:
        """Block until one (or all, ``wait_all``) of ``models`` (default: every running one) completes."""

    def cancel_models(self, *models: ExecutableModelSpace) -> None:
        """Stop running models; each ends Interrupted (early stopping, experiment stop)."""
        raise NotImplementedError(f"{type(self).__name__} cannot cancel models.")

    def shutdown(self) -> None:  # noqa: B027 - engines without resources need no shutdown
        """Stop running models and release resources."""

    def state_dict(self) -> dict[str, Any]:
        return {"next_model_id": self._next_model_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._next_model_id = max(self._next_model_id, int(state.get("next_model_id", 0)))

    # ---- events -----------------------------------------------------------------------------
    def register_model_event_callback(self, event_type: ModelEventType, callback: EventCallback) -> None:
        self._callbacks[ModelEventType(event_type)].append(callback)

    def unregister_model_event_callback(self, event_type: ModelEventType, callback: EventCallback) -> None:
        self._callbacks[ModelEventType(event_type)].remove(callback)

    def dispatch_model_event(self, event: ModelEvent) -> None:
        """Apply the event to its model, then tell every callback."""
        event.apply()
        for callback in list(self._callbacks[event.event_type]):
            callback(event)

    def record_ended_model(self, model: ExecutableModelSpace, reason: str | None = None) -> None:
        """A layer above ended ``model`` without running it (e.g. a duplicate marked Invalid).

        Engines have nothing to run; the experiment's recording layer stores it, so the store
        holds every model a strategy produced.
        """
        self.assign_model_id(model)

    def assign_model_id(self, model: ExecutableModelSpace) -> int:
        """Give ``model`` an id unless it has one (an outer layer, e.g. the store, may have set it)."""
        if model.model_id is None:
            model.model_id = self._next_model_id
        self._next_model_id = max(self._next_model_id, model.model_id + 1)
        return model.model_id


class Middleware(ExecutionEngine):
    """An engine that wraps another: by default forwards calls down and events up.

    Subclasses override what they change (e.g. CGO merges submissions, the store records them).
    """

    def __init__(self, engine: ExecutionEngine | None = None) -> None:
        super().__init__()
        self._engine: ExecutionEngine | None = None
        if engine is not None:
            self.set_engine(engine)

    @property
    def engine(self) -> ExecutionEngine:
        if self._engine is None:
            raise RuntimeError(f"{type(self).__name__} has no engine below it yet; call set_engine first.")
        return self._engine

    @property
    def runs_in_process(self) -> bool:  # type: ignore[override]
        return self.engine.runs_in_process

    def set_engine(self, engine: ExecutionEngine) -> None:
        self._engine = engine
        for event_type in ModelEventType:
            engine.register_model_event_callback(event_type, self.handle_event)

    def handle_event(self, event: ModelEvent) -> None:
        """An event from below; the model is already updated, so just pass it up."""
        for callback in list(self._callbacks[event.event_type]):
            callback(event)

    def submit_models(self, *models: ExecutableModelSpace) -> None:
        self.engine.submit_models(*models)

    def list_models(self, status: ModelStatus | None = None) -> Iterable[ExecutableModelSpace]:
        return self.engine.list_models(status)

    def idle_worker_available(self) -> bool:
        return self.engine.idle_worker_available()

    def budget_available(self) -> bool:
        return self.engine.budget_available()

    def wait_models(self, *models: ExecutableModelSpace, timeout: float | None = None, wait_all: bool = False) -> None:
        self.engine.wait_models(*models, timeout=timeout, wait_all=wait_all)

    def cancel_models(self, *models: ExecutableModelSpace) -> None:
        self.engine.cancel_models(*models)

    def shutdown(self) -> None:
        self.engine.shutdown()

    def state_dict(self) -> dict[str, Any]:
        return {"engine": self.engine.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.engine.load_state_dict(state.get("engine", {}))

    def assign_model_id(self, model: ExecutableModelSpace) -> int:
        return self.engine.assign_model_id(model)

    def record_ended_model(self, model: ExecutableModelSpace, reason: str | None = None) -> None:
        self.engine.record_ended_model(model, reason)
