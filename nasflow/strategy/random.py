"""``Random``: samples uniformly (honouring choice weights and constraints)."""

from __future__ import annotations

import logging
import random
import warnings
from typing import Any

from .base import Strategy
from .utils import DedupFilter

__all__ = ["Random"]

_logger = logging.getLogger(__name__)


class Random(Strategy):
    """Random search. ``dedup=True`` never submits the same sample twice; ``seed`` makes it reproducible."""

    def __init__(self, dedup: bool = True, seed: int | None = None, max_retries: int = 1000, **kwargs: Any) -> None:
        super().__init__()
        legacy = set(kwargs) & {"variational", "model_filter"}
        if legacy:  # NNI 2.x arguments that NNI 3.0 still accepts with a warning
            warnings.warn(f"Random: {', '.join(sorted(legacy))} are no longer supported in random search (as in NNI "
                          "3.0) and are ignored; filter models with the Filter middleware.", DeprecationWarning,
                          stacklevel=2)
        unknown = set(kwargs) - legacy
        if unknown:
            raise TypeError(f"Random got unexpected arguments {sorted(unknown)}; it takes dedup, seed and max_retries.")
        self.dedup = DedupFilter() if dedup else None
        self.seed = seed
        self.max_retries = max_retries
        self._rng = random.Random(seed)

    def _run(self) -> None:
        while self.wait_for_worker():
            model = self._draw()
            if model is None:
                _logger.info("Random: no new sample found in %d draws; the space looks exhausted.", self.max_retries)
                break
            self.engine.submit_models(model)
        self.engine.wait_models(wait_all=True)

    def _draw(self) -> Any:
        for _ in range(self.max_retries):
            model = self.model_space.random(random_state=self._rng)
            if self.dedup is None or self.dedup.add(model.sample):
                return model
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.getstate(), "seen": self.dedup.state_dict() if self.dedup else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("rng") is not None:
            self._rng.setstate(_as_tuple(state["rng"]))
        if self.dedup is not None and state.get("seen") is not None:
            self.dedup.load_state_dict(state["seen"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value
