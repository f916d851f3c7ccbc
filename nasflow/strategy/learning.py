"""``LearningStrategy``: the lifecycle of a strategy that learns from every model's end."""

from __future__ import annotations

import abc
from typing import Any

from nasflow.execution import ExecutionEngine, ModelEvent, ModelEventType
from nasflow.space import ExecutableModelSpace

from .base import Strategy
from .utils import EventHooks

__all__ = ["LearningStrategy"]


class LearningStrategy(Strategy):
    """Hears each model's ``TrainingEnd`` while it runs, and takes a saved state before or after
    ``initialize`` (a resumed experiment loads it after; a user may load it before): a state loaded
    early waits until the space is known, since decoding it needs the space.

    Subclasses implement ``_prepare(space)`` (build what depends on the space), ``_on_training_end``,
    ``_state()`` and ``_restore(state)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._hooks = EventHooks()
        self._ready = False
        self._pending_state: dict[str, Any] | None = None

    @abc.abstractmethod
    def _prepare(self, model_space: ExecutableModelSpace) -> None:
        """Build what depends on the space (decision steps, codecs)."""

    @abc.abstractmethod
    def _on_training_end(self, event: ModelEvent) -> None:
        """Learn from a model that ended."""

    @abc.abstractmethod
    def _state(self) -> dict[str, Any]:
        """The state as plain (JSON-able) data."""

    @abc.abstractmethod
    def _restore(self, state: dict[str, Any]) -> None:
        """Load a non-empty state produced by ``_state``."""

    def _initialize(self, model_space: ExecutableModelSpace, engine: ExecutionEngine) -> ExecutableModelSpace:
        self._prepare(model_space)
        self._ready = True
        if self._pending_state:
            self._restore(self._pending_state)
        self._pending_state = None
        self._hooks.register(engine, ModelEventType.TrainingEnd, self._on_training_end)
        return model_space

    def _cleanup(self) -> None:
        self._hooks.clear()

    def state_dict(self) -> dict[str, Any]:
        return self._state() if self._ready else dict(self._pending_state or {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not self._ready:
            self._pending_state = dict(state)
        elif state:
            self._restore(state)
