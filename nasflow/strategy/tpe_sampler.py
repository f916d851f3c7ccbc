"""Optuna's ``TPESampler`` with random numbers that depend only on the seed and the trial number.

A resumed search rebuilds its study from the told trials; with this sampler it then draws exactly
what the uninterrupted search would have drawn, without the sampler's random state (about 12 kB
that changes with every trial) in the saved strategy state: the state is the told trials alone,
an append-only list.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.samplers import TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial

__all__ = ["CountedTPESampler"]


class CountedTPESampler(TPESampler):
    """``TPESampler(seed=seed, **kwargs)`` whose generators are reseeded from ``(seed, trial.number)``
    before each trial (``before_trial``, which Optuna calls as a trial starts)."""

    def __init__(self, seed: int, **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        tpe_seed, random_seed = np.random.SeedSequence([self._base_seed, trial.number]).generate_state(2)
        self._rng.rng.seed(int(tpe_seed))  # TPE's candidates
        self._random_sampler._rng.rng.seed(int(random_seed))  # start-up trials, independent parameters
        super().before_trial(study, trial)
