"""Optuna's ``TPESampler`` with random numbers that depend only on the seed and the trial number,
modelling a bounded window of the study's trials.

A resumed search rebuilds its study from the told trials; with this sampler it then draws exactly
what the uninterrupted search would have drawn, without the sampler's random state (about 12 kB
that changes with every trial) in the saved strategy state: the state is the told trials alone,
an append-only list.

TPE scores every candidate against each trial it models, in numpy and in Python loops over the
trials, so with all of a study's trials its cost per trial grows with the study (about 90 ms per
trial at 10,000 trials on a 2-core machine). ``TrialWindow`` keeps what it models bounded.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Container
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

__all__ = ["CountedTPESampler", "TrialWindow"]

_MODELED = (TrialState.COMPLETE, TrialState.PRUNED)  # the finished trials TPE learns from

try:
    from optuna.samplers._tpe.sampler import default_gamma
except ImportError:  # Optuna's documented default, should the private name move
    def default_gamma(x: int) -> int:
        return min(math.ceil(0.1 * x), 25)

_logger = logging.getLogger(__name__)


class CountedTPESampler(TPESampler):
    """``TPESampler(seed=seed, **kwargs)`` whose generators are reseeded from ``(seed, trial.number)``
    before each trial (``before_trial``, which Optuna calls as a trial starts).

    The generators are Optuna's own (private) ones, TPE's candidates and the random sampler's; on
    an Optuna without them the sampler keeps its seeded sequence (a resumed search then differs
    from an uninterrupted one) and says so once.

    With a ``window``, TPE samples from the window's finished trials instead of all of the study's
    (through the study's private ``_get_trials``, which is all TPE reads them by; the tests compare
    the draws with Optuna's own on the kept trials).
    """

    def __init__(self, seed: int, window: TrialWindow | None = None, **kwargs: Any) -> None:
        if window is not None and kwargs.get("gamma") is not None:
            raise ValueError("TPE: a custom gamma needs max_history=None: the window keeps the best 25 trials, "
                             "the most Optuna's default gamma puts in TPE's good group.")
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed
        self.window = window
        if window is not None:
            self._gamma = self._gamma_of_all
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

    # TPE reads the study's trials only when it samples: there it sees the window's.
    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return super().sample_relative(self._modeled(study), trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return super().sample_independent(self._modeled(study), trial, param_name, param_distribution)

    def _modeled(self, study: Study) -> Any:
        if self.window is None:
            return study
        self.window.update(study)
        return _WindowedStudy(study, self.window)

    def _gamma_of_all(self, n_modeled: int) -> int:
        """The size of the "good" group, from every trial the study ended, not the window's few."""
        assert self.window is not None
        return default_gamma(self.window.ended)


class TrialWindow:
    """The finished trials TPE models: the ``size`` most recent and the ``n_best`` best.

    TPE's "good" group is the best ``gamma(n)`` trials, at most 25 with Optuna's default gamma;
    keeping the best 25 (and counting every ended trial for ``n``) keeps that group exactly what it
    is with every trial. The model of the rest of the space forgets the oldest trials, which
    Optuna's default weights fade already. The window follows the study itself (``update``).
    """

    def __init__(self, size: int, n_best: int = 25) -> None:
        self.size = size
        self.n_best = n_best
        self.ended = 0  # COMPLETE or PRUNED trials seen
        self.unfinished: list[FrozenTrial] = []  # the study's RUNNING and WAITING trials, at the last update
        self._recent: deque[FrozenTrial] = deque()
        self._best: list[FrozenTrial] = []  # the best COMPLETE trials that left the recent ones
        self._trials: list[FrozenTrial] | None = []  # both, by number; None when out of date
        self._seen_before = 0  # the study's trials before this index have ended and been seen
        self._seen_after: set[int] = set()  # indices from there on that ended and were seen

    def update(self, study: Study) -> None:
        """Take in the study's trials that ended since the last look (a trial never starts again, so
        only those after the first unfinished one are looked at) and note the unfinished ones."""
        trials = study.get_trials(deepcopy=False)  # by number; a list copy, no filtering
        self.unfinished = []
        for index in range(self._seen_before, len(trials)):
            trial = trials[index]
            if not trial.state.is_finished():
                self.unfinished.append(trial)
            elif index not in self._seen_after:
                self._seen_after.add(index)
                self._add(trial)
        while self._seen_before in self._seen_after:
            self._seen_after.remove(self._seen_before)
            self._seen_before += 1

    def _add(self, trial: FrozenTrial) -> None:
        if trial.state not in _MODELED:
            return
        self.ended += 1
        self._recent.append(trial)
        if len(self._recent) > self.size:
            old = self._recent.popleft()
            if old.state == TrialState.COMPLETE:
                self._best = sorted([*self._best, old], key=_rank)[: self.n_best]
        self._trials = None

    def trials(self) -> list[FrozenTrial]:
        """The modeled trials, by number."""
        if self._trials is None:
            self._trials = sorted([*self._best, *self._recent], key=lambda t: t.number)
        return self._trials


def _rank(trial: FrozenTrial) -> tuple[float, int]:
    """Best first (the study maximizes), earlier first among equals, as Optuna's TPE splits them."""
    return -trial.value, trial.number  # type: ignore[operator]


class _WindowedStudy:
    """A study whose ended trials are a window's; everything else is the study's own. TPE asks it
    for its COMPLETE and PRUNED trials, and with ``constant_liar`` for the RUNNING ones too."""

    def __init__(self, study: Study, window: TrialWindow) -> None:
        self._study = study
        self._window = window

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = False, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        wanted = tuple(TrialState) if states is None else tuple(states)  # type: ignore[arg-type]
        trials = [t for t in self._window.trials() if t.state in wanted]
        running = [t for t in self._window.unfinished if t.state in wanted]
        return sorted(trials + running, key=lambda t: t.number) if running else trials


def _numpy_rng(sampler: Any) -> np.random.RandomState | None:
    """The numpy generator behind an Optuna sampler's ``_rng`` (a LazyRandomState), if it has one."""
    rng = getattr(getattr(sampler, "_rng", None), "rng", None)
    return rng if isinstance(rng, np.random.RandomState) else None
