"""``GridSearch``: every point of the space's grid, each once."""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterable, Iterator
from typing import Any

from nasflow.execution import ExecutionEngine
from nasflow.mutable import LabeledMutable, Mutable, Sample
from nasflow.mutable.base import IsLeaf
from nasflow.space import ExecutableModelSpace

from .base import Strategy
from .utils import DedupFilter, check_int, check_seed, rng_state, sample_key, set_rng_state, value_leaves

__all__ = ["GridSearch"]

_logger = logging.getLogger(__name__)


class _SampleGrid(Mutable):
    """The space's leaves alone, frozen to plain samples.

    It enumerates exactly what ``model_space.grid()`` does (same leaves, same ``Mutable.grid``)
    without building a model per grid point, which matters when a level is materialized to shuffle.
    """

    def __init__(self, leaves: dict[str, LabeledMutable]) -> None:
        self._leaves = leaves
        self._labels = list(value_leaves(leaves))

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        return self._leaves.values()

    def freeze(self, sample: Sample) -> Sample:
        return {label: sample[label] for label in self._labels if label in sample}


class GridSearch(Strategy):
    """Grid search over the space.

    A finite space is enumerated in full, then the search stops. A space with continuous numbers is
    enumerated level by level: level ``g`` splits each number at the quantiles ``k / 2**g``, and
    each level yields only points the previous levels did not. ``granularity`` fixes one level
    (then the search stops after it). ``shuffle`` randomizes the order within each level (seeded by
    ``seed``), so a budget cut short still spreads over the space. ``dedup`` never submits a sample
    twice, also across a restart.
    """

    def __init__(self, shuffle: bool = True, seed: int | None = None, granularity: int | None = None,
                 dedup: bool = True) -> None:
        super().__init__()
        self.shuffle = bool(shuffle)
        self.seed = check_seed("GridSearch", seed)
        self.granularity = check_int("GridSearch", "granularity", granularity, 1, allow_none=True)
        self.dedup = DedupFilter() if dedup else None
        self._rng = random.Random(seed)
        self._level = self.granularity or 1
        self._index = 0  # points of the current level already consumed (submitted or skipped)
        self._level_rng: list[Any] | None = None  # rng state when the current level was shuffled
        self._grid: _SampleGrid | None = None
        self._single_level = self.granularity is not None

    def _initialize(self, model_space: ExecutableModelSpace, engine: ExecutionEngine) -> ExecutableModelSpace:
        leaves = model_space.simplify()
        self._grid = _SampleGrid(leaves)
        self._single_level = self._single_level or all(leaf.is_finite() for leaf in leaves.values())
        return model_space

    def _level_samples(self, level: int) -> Iterator[Sample]:
        assert self._grid is not None
        points: Iterator[Sample] = self._grid.grid(granularity=level)
        if not self._single_level and level > 1:
            previous = {sample_key(s) for s in self._grid.grid(granularity=level - 1)}
            points = (s for s in points if sample_key(s) not in previous)
        if not self.shuffle:
            return points
        materialized = list(points)
        self._level_rng = rng_state(self._rng)
        self._rng.shuffle(materialized)
        return iter(materialized)

    def _run(self) -> None:
        while True:
            for sample in itertools.islice(self._level_samples(self._level), self._index, None):
                if not self.wait_for_worker():
                    self.engine.wait_models(wait_all=True)
                    return
                self._index += 1
                if self.dedup is not None and not self.dedup.add(sample):
                    continue
                self.engine.submit_models(self.model_space.freeze(sample))
            if self._single_level:
                _logger.info("GridSearch: the grid is exhausted.")
                break
            if self._index == 0:
                _logger.info("GridSearch: level %d adds no new point; the grid is saturated.", self._level)
                break
            self._level, self._index, self._level_rng = self._level + 1, 0, None
        self.engine.wait_models(wait_all=True)

    def state_dict(self) -> dict[str, Any]:
        return {
            "level": self._level,
            "index": self._index,
            "rng": self._level_rng if self._level_rng is not None else rng_state(self._rng),
            "seen": self.dedup.state_dict() if self.dedup is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._level = int(state.get("level", self._level))
        self._index = int(state.get("index", 0))
        if state.get("rng") is not None:
            set_rng_state(self._rng, state["rng"])  # the level is re-shuffled exactly as before
        if self.dedup is not None and state.get("seen") is not None:
            self.dedup.load_state_dict(state["seen"])
