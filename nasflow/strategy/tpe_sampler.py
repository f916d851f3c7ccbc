"""Optuna's ``TPESampler`` with random numbers that depend only on the seed and the trial number.

A resumed search rebuilds its study from the told trials; with this sampler it then draws exactly
what the uninterrupted search would have drawn, without the sampler's random state (about 12 kB
that changes with every trial) in the saved strategy state: the state is the told trials alone,
an append-only list.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from optuna.samplers import TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial

__all__ = ["CountedTPESampler"]

_logger = logging.getLogger(__name__)


class CountedTPESampler(TPESampler):
    """``TPESampler(seed=seed, **kwargs)`` whose generators are reseeded from ``(seed, trial.number)``
    before each trial (``before_trial``, which Optuna calls as a trial starts).

    The generators are Optuna's own (private) ones, TPE's candidates and the random sampler's; on
    an Optuna without them the sampler keeps its seeded sequence (a resumed search then differs
    from an uninterrupted one) and says so once.
    """

    def __init__(self, seed: int, **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed
        if None in self._generators():
            _logger.warning("TPE: this Optuna version's TPESampler keeps its random state elsewhere; a resumed "
                            "search will not draw exactly what the uninterrupted one would have.")

    def _generators(self) -> list[np.random.RandomState | None]:
        """TPE's candidates, and the random sampler's start-up trials and independent parameters."""
        return [_numpy_rng(self), _numpy_rng(getattr(self, "_random_sampler", None))]

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        generators = self._generators()
        seeds = np.random.SeedSequence([self._base_seed, trial.number]).generate_state(len(generators))
        for generator, seed in zip(generators, seeds, strict=True):
            if generator is not None:
                generator.seed(int(seed))
        super().before_trial(study, trial)


def _numpy_rng(sampler: Any) -> np.random.RandomState | None:
    """The numpy generator behind an Optuna sampler's ``_rng`` (a LazyRandomState), if it has one."""
    rng = getattr(getattr(sampler, "_rng", None), "rng", None)
    return rng if isinstance(rng, np.random.RandomState) else None
