"""``Strategy``: decides which models to try, submits them to an engine, learns from their metrics."""

from __future__ import annotations

import abc
import logging
import os
from collections.abc import Iterator
from typing import Any

from nasflow.execution import ExecutionEngine
from nasflow.space import ExecutableModelSpace, ModelStatus

__all__ = ["Strategy", "sort_models"]

_logger = logging.getLogger(__name__)


def sort_models(models: list[ExecutableModelSpace]) -> list[ExecutableModelSpace]:
    """Best first (by ``score``: the metric in the evaluator's direction); models without a metric last,
    in submission order."""
    scored = [m for m in models if m.score is not None]
    return sorted(scored, key=lambda m: -m.score) + [m for m in models if m.score is None]  # type: ignore[operator]


class Strategy(abc.ABC):
    """Base of multi-trial strategies.

    ``initialize(model_space, engine)`` once, then ``run()`` drives the search until the engine's
    budget is spent (or the strategy has nothing more to try).
    """

    def __init__(self) -> None:
        self._model_space: ExecutableModelSpace | None = None
        self._engine: ExecutionEngine | None = None

    @property
    def model_space(self) -> ExecutableModelSpace:
        if self._model_space is None:
            raise RuntimeError(f"{type(self).__name__} is not initialized; call initialize(model_space, engine).")
        return self._model_space

    @property
    def engine(self) -> ExecutionEngine:
        if self._engine is None:
            raise RuntimeError(f"{type(self).__name__} is not initialized; call initialize(model_space, engine).")
        return self._engine

    def initialize(self, model_space: ExecutableModelSpace, engine: ExecutionEngine) -> None:
        if self._model_space is not None:
            raise RuntimeError(f"{type(self).__name__} was already initialized; use a new strategy object.")
        self._model_space = self._initialize(model_space, engine)
        self._engine = engine

    def set_checkpoint_dir(self, path: str | os.PathLike[str]) -> None:  # noqa: B027 - optional hook
        """Hook: a folder of the experiment where the strategy may keep what is too big for the store
        (a one-shot strategy's checkpoints). The experiment calls it before ``initialize``."""

    def _initialize(self, model_space: ExecutableModelSpace, engine: ExecutionEngine) -> ExecutableModelSpace:
        """Hook: register callbacks, check the space. Returns the space the strategy will use."""
        return model_space

    def run(self) -> None:
        self.model_space  # noqa: B018 - raises a clear error if not initialized
        try:
            self._run()
        finally:
            self._cleanup()

    @abc.abstractmethod
    def _run(self) -> None:
        """The search loop."""

    def _cleanup(self) -> None:  # noqa: B027 - an optional hook, empty on purpose
        """Hook: unregister callbacks."""

    def list_models(self, sort: bool = True, limit: int | None = None) -> Iterator[ExecutableModelSpace]:
        """Trained models, best first when ``sort``."""
        models = list(self.engine.list_models(ModelStatus.Trained))
        if sort:
            models = sort_models(models)
        yield from models[:limit] if limit is not None else models

    def state_dict(self) -> dict[str, Any]:
        """Enough to continue the search after a restart (with the store's models replayed)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def wait_for_worker(self) -> bool:
        """Block until a worker is free; False when the budget ran out meanwhile."""
        while self.engine.budget_available() and not self.engine.idle_worker_available():
            self.engine.wait_models()
        return self.engine.budget_available()

    def wait_for_resource(self) -> bool:
        """NNI's name for ``wait_for_worker`` (custom strategies ported from NNI call it)."""
        return self.wait_for_worker()
