"""``Chain``: a strategy whose engine is wrapped by strategy middlewares."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from nasflow.execution import ExecutionEngine
from nasflow.space import ExecutableModelSpace

from ..base import Strategy
from .base import StrategyMiddleware

__all__ = ["Chain"]

_logger = logging.getLogger(__name__)


class Chain(Strategy):
    """``Chain(strategy, m1, m2)``: the strategy submits to ``m1``, ``m1`` to ``m2``, ``m2`` to the engine.

    Events go the other way (engine -> ``m2`` -> ``m1`` -> strategy), so the first middleware is the
    one closest to the strategy. Example: ``Chain(RegularizedEvolution(), Deduplication('replace'),
    FailureHandler(retry_patience=2))`` deduplicates what evolution proposes and retries what fails.
    """

    def __init__(self, strategy: Strategy, *middlewares: StrategyMiddleware) -> None:
        super().__init__()
        if not isinstance(strategy, Strategy):
            raise TypeError(f"Chain: the first argument must be a Strategy, got {strategy!r}.")
        if not middlewares:
            raise ValueError(
                "Chain needs at least one middleware after the strategy; without any, use the strategy itself."
            )
        for i, middleware in enumerate(middlewares, start=1):
            if not isinstance(middleware, StrategyMiddleware):
                raise TypeError(
                    f"Chain: argument {i} must be a StrategyMiddleware (Deduplication, FailureHandler, Filter, "
                    f"MedianStop, ...), got {middleware!r}."
                )
        if len({id(m) for m in middlewares}) != len(middlewares):
            raise ValueError("Chain: the same middleware object appears twice; create one object per position.")
        self._strategy = strategy
        self._middlewares = list(middlewares)

    @property
    def strategy(self) -> Strategy:
        return self._strategy

    @property
    def middlewares(self) -> list[StrategyMiddleware]:
        return list(self._middlewares)

    def __getitem__(self, index: int) -> Strategy | StrategyMiddleware:
        """0 is the strategy, 1.. the middlewares in order."""
        return [self._strategy, *self._middlewares][index]

    def _initialize(self, model_space: ExecutableModelSpace, engine: ExecutionEngine) -> ExecutableModelSpace:
        below: ExecutionEngine = engine
        for middleware in reversed(self._middlewares):  # bottom-up, so each wraps a wired engine
            middleware.set_engine(below)
            below = middleware
        space = model_space
        for middleware in self._middlewares:  # top-down: a middleware may hand a narrower space below
            space = middleware.set_model_space(space)
        self._strategy.initialize(model_space, self._middlewares[0])
        return model_space

    def _run(self) -> None:
        self._strategy.run()

    def _cleanup(self) -> None:
        for middleware in self._middlewares:
            try:
                middleware.detach()
            except Exception:  # cleanup must not hide the error that ended the run
                _logger.exception("Chain: detaching %r failed; ignored.", middleware)

    def list_models(self, sort: bool = True, limit: int | None = None) -> Iterator[ExecutableModelSpace]:
        return self._strategy.list_models(sort=sort, limit=limit)

    def state_dict(self) -> dict[str, Any]:
        return {
            "strategy": self._strategy.state_dict(),
            "middlewares": [middleware.state_dict() for middleware in self._middlewares],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("middlewares", [])
        if len(saved) != len(self._middlewares):
            raise ValueError(
                f"Chain: the state holds {len(saved)} middleware states but this chain has "
                f"{len(self._middlewares)} middlewares; resume with the same chain it was saved from."
            )
        self._strategy.load_state_dict(state.get("strategy", {}))
        for middleware, middleware_state in zip(self._middlewares, saved, strict=True):
            middleware.load_state_dict(middleware_state)

    def __repr__(self) -> str:
        inner = ", ".join(repr(x) for x in [self._strategy, *self._middlewares])
        return f"Chain({inner})"
