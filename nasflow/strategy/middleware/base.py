"""``StrategyMiddleware``: an engine wrapper that sits between a strategy and its engine."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from nasflow.execution import ExecutionEngine, FinalMetricEvent, Middleware, ModelEventType, TrainingEndEvent
from nasflow.runtime import MetricValue
from nasflow.space import ExecutableModelSpace, ModelStatus

__all__ = ["StrategyMiddleware"]

_logger = logging.getLogger(__name__)


class StrategyMiddleware(Middleware):
    """Sees every model a strategy submits and every event coming back, and may change either.

    Models travel down (strategy -> middlewares -> engine), events travel up. A middleware may
    drop, replace or resubmit models, end a model itself without running it (e.g. Invalid, with or
    without a metric), or act on events (e.g. cancel a running model). It is wired by ``Chain``,
    which also gives it the model space (``set_model_space``), so it can draw models of its own.

    ``state_dict`` / ``load_state_dict`` hold the middleware's own state (what it needs to go on
    after a restart), not the engine's: ``Chain`` saves them next to the strategy's.
    """

    def __init__(self) -> None:
        super().__init__()
        self._model_space: ExecutableModelSpace | None = None
        self._ended_here: list[ExecutableModelSpace] = []

    # ---- wiring -------------------------------------------------------------------------------
    @property
    def model_space(self) -> ExecutableModelSpace:
        if self._model_space is None:
            raise RuntimeError(
                f"{type(self).__name__} has no model space; use it inside Chain(strategy, ...) or call "
                "set_model_space(space) first."
            )
        return self._model_space

    def set_model_space(self, model_space: ExecutableModelSpace) -> ExecutableModelSpace:
        """Attach the space; returns the space the layers below should see."""
        self._model_space = model_space
        return model_space

    def set_engine(self, engine: ExecutionEngine) -> None:
        if self._engine is not None:
            raise RuntimeError(f"{type(self).__name__} is already attached to an engine; use a new middleware object.")
        super().set_engine(engine)

    def detach(self) -> None:
        """Stop listening to the engine below (the strategy is done)."""
        if self._engine is None:
            return
        for event_type in ModelEventType:
            try:
                self._engine.unregister_model_event_callback(event_type, self.handle_event)
            except ValueError:
                pass

    # ---- helpers for subclasses ---------------------------------------------------------------
    def end_model_here(self, model: ExecutableModelSpace, status: ModelStatus, reason: str,
                       metric: MetricValue | None = None) -> None:
        """Finish ``model`` without running it: tell the layers above as if the engine had.

        The layers below record it (``record_ended_model``), so the experiment's store holds it too.
        """
        self._ended_here.append(model)
        if metric is not None:
            self.dispatch_model_event(FinalMetricEvent(model, metric))
        self.dispatch_model_event(TrainingEndEvent(model, status, reason))
        self.engine.record_ended_model(model, reason)

    # ---- engine interface ---------------------------------------------------------------------
    def list_models(self, status: ModelStatus | None = None) -> Iterable[ExecutableModelSpace]:
        """The engine's models and the ones this middleware ended itself, each once."""
        seen: set[int] = set()
        out: list[ExecutableModelSpace] = []
        for model in [*self.engine.list_models(status), *self._ended_here]:
            if id(model) not in seen and (status is None or model.status == status):
                seen.add(id(model))
                out.append(model)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
