"""Multi-fidelity search: many models on a small budget, the best promoted to larger ones.

``SuccessiveHalving`` (Jamieson and Talwalkar, 2016), ``Hyperband`` (Li et al., 2018) and ``ASHA``
(Li et al., 2020, "A System for Massively Parallel Hyperparameter Tuning"). The budget is a number
the evaluator reads with ``nasflow.trial_budget()`` (epochs, say): each submitted model carries its
rung's budget on its evaluator (``nasflow.evaluator.Budgeted``), which works with every engine and
training service. A promoted model is trained again with the larger budget; it is ranked at each
rung on the final metric it reported there (intermediates per epoch are kept as usual).
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any

from nasflow.evaluator import Budgeted
from nasflow.execution import ModelEvent
from nasflow.mutable import Sample
from nasflow.space import ExecutableModelSpace

from .learning import LearningStrategy
from .utils import DedupFilter, SampleCodec, check_seed, rng_state, sample_key, set_rng_state

__all__ = ["SuccessiveHalving", "Hyperband", "ASHA", "rung_budgets"]

_logger = logging.getLogger(__name__)

_RANDOM_DRAWS = 1000


def rung_budgets(min_budget: float, max_budget: float, eta: float) -> list[float]:
    """The budgets of the rungs, ``max_budget * eta**-k`` down to no less than ``min_budget``
    (rounded to whole units when both bounds are ints)."""
    for name, value in (("min_budget", min_budget), ("max_budget", max_budget)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}.")
    if min_budget > max_budget:
        raise ValueError(f"min_budget ({min_budget}) must not exceed max_budget ({max_budget}).")
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta > 1:
        raise ValueError(f"eta (the promotion ratio) must be a number above 1, got {eta!r}.")
    rungs = int(math.floor(math.log(max_budget / min_budget) / math.log(eta) + 1e-9))
    budgets = [max_budget * eta ** -(rungs - k) for k in range(rungs + 1)]
    if isinstance(min_budget, int) and isinstance(max_budget, int):
        budgets = sorted({max(int(round(b)), 1) for b in budgets})
    return budgets


class _MultiFidelity(LearningStrategy):
    """Shared bookkeeping: rungs, each configuration's metric per rung, submission with a budget."""

    def __init__(self, min_budget: float, max_budget: float, eta: float, seed: int | None, dedup: bool) -> None:
        super().__init__()
        self.min_budget, self.max_budget, self.eta = min_budget, max_budget, eta
        self.budgets = rung_budgets(min_budget, max_budget, eta)
        self.seed = check_seed(type(self).__name__, seed)
        self._rng = random.Random(seed)
        self.dedup = DedupFilter() if dedup else None
        self._configs: dict[str, Sample] = {}  # key -> sample, every configuration tried
        self._results: list[dict[str, float]] = [{} for _ in self.budgets]  # per rung: key -> metric
        self._promoted: list[set[str]] = [set() for _ in self.budgets]  # per rung: keys sent up from it
        self._running: dict[int, tuple[str, int]] = {}
        self._codec: SampleCodec | None = None

    @property
    def top(self) -> int:
        return len(self.budgets) - 1

    def _prepare(self, model_space: ExecutableModelSpace) -> None:
        self._codec = SampleCodec(model_space.simplify())

    def _new_config(self) -> str | None:
        """A random configuration not tried before (None when the space looks exhausted)."""
        for _ in range(_RANDOM_DRAWS):
            sample = self.model_space.random(random_state=self._rng).sample
            if self.dedup is None or self.dedup.add(sample):
                key = sample_key(sample)
                self._configs[key] = dict(sample)  # type: ignore[arg-type]
                return key
        return None

    def _submit(self, key: str, rung: int) -> ExecutableModelSpace:
        model = self.model_space.freeze(self._configs[key])
        model.evaluator = Budgeted(model.evaluator, self.budgets[rung])
        self._running[id(model)] = (key, rung)
        _logger.debug("%s: rung %d (budget %s): %s", type(self).__name__, rung, self.budgets[rung], model.sample)
        self.engine.submit_models(model)
        return model

    def _on_training_end(self, event: ModelEvent) -> None:
        entry = self._running.pop(id(event.model), None)
        if entry is not None and event.model.score is not None:
            key, rung = entry
            self._results[rung][key] = event.model.score

    def _best(self, rung: int, keys: list[str], count: int) -> list[str]:
        scored = [k for k in keys if k in self._results[rung]]
        return sorted(scored, key=lambda k: -self._results[rung][k])[:count]

    # ---- state --------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        index = {key: i for i, key in enumerate(self._configs)}
        return {
            "rng": rng_state(self._rng),
            "seen": self.dedup.state_dict() if self.dedup is not None else None,
            "configs": [self._codec.encode(s) for s in self._configs.values()],
            "results": [{str(index[k]): v for k, v in rung.items()} for rung in self._results],
            "promoted": [sorted(index[k] for k in rung) for rung in self._promoted],
            **self._schedule_state(index),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        assert self._codec is not None
        set_rng_state(self._rng, state["rng"])
        if self.dedup is not None and state.get("seen") is not None:
            self.dedup.load_state_dict(state["seen"])
        samples = [self._codec.decode(s) for s in state["configs"]]
        keys = [sample_key(s) for s in samples]
        self._configs = dict(zip(keys, samples, strict=True))
        if len(state["results"]) != len(self.budgets):
            raise ValueError(f"{type(self).__name__}: the saved state has {len(state['results'])} rungs, this strategy "
                             f"{len(self.budgets)}; resume with the same min_budget, max_budget and eta.")
        self._results = [{keys[int(i)]: float(v) for i, v in rung.items()} for rung in state["results"]]
        self._promoted = [{keys[i] for i in rung} for rung in state["promoted"]]
        self._load_schedule(state, keys)

    def _schedule_state(self, index: dict[str, int]) -> dict[str, Any]:
        return {}

    def _load_schedule(self, state: dict[str, Any], keys: list[str]) -> None:
        return None


class Hyperband(_MultiFidelity):
    """Hyperband: successive halving in brackets that trade breadth for budget.

    With rung budgets ``max_budget * eta**-k`` (``k = s_max .. 0``), bracket ``s`` starts
    ``ceil((s_max + 1) / (s + 1) * eta**s)`` random models on budget ``max_budget * eta**-s`` and
    keeps the best ``1/eta`` at each rung until ``max_budget``. Brackets run from the most
    aggressive (``s = s_max``) down to plain full-budget training, then start over, until the trial
    budget (``max_trial_number``) or the duration runs out. Each rung waits for all its models.
    """

    def __init__(self, min_budget: float = 1, max_budget: float = 81, eta: float = 3, *, seed: int | None = None,
                 dedup: bool = True) -> None:
        super().__init__(min_budget, max_budget, eta, seed, dedup)
        self._bracket = 0  # brackets started so far (state: where to go on after a restart)
        self._current: tuple[int, list[str]] | None = None  # rung being run and its configurations

    def _brackets(self) -> list[tuple[int, int]]:
        """(number of models, starting rung) of each bracket, most aggressive first."""
        s_max = self.top
        return [(math.ceil((s_max + 1) / (s + 1) * self.eta ** s), s_max - s) for s in range(s_max, -1, -1)]

    def _run(self) -> None:
        while self.engine.budget_available():
            if self._current is None:
                count, start = self._brackets()[self._bracket % len(self._brackets())]
                keys = [k for k in (self._new_config() for _ in range(count)) if k is not None]
                if not keys:
                    _logger.info("%s: no unseen configuration left; stopping.", type(self).__name__)
                    break
                self._current = (start, keys)
            if not self._run_bracket():
                break
            self._bracket += 1
            self._current = None
        self.engine.wait_models(wait_all=True)

    def _run_bracket(self) -> bool:
        """Successive halving from the current rung to the top; False when the budget ran out."""
        assert self._current is not None
        rung, keys = self._current
        while True:
            for key in keys:
                if key in self._results[rung]:
                    continue  # already trained there (a resumed bracket)
                if not self.wait_for_worker():
                    return False
                self._submit(key, rung)
            self.engine.wait_models(wait_all=True)
            if rung == self.top:
                return True
            keep = max(int(len(keys) / self.eta), 1)
            best = self._best(rung, keys, keep)
            if not best:
                _logger.warning("%s: no model of rung %d reported a metric; the bracket ends.",
                                type(self).__name__, rung)
                return True
            self._promoted[rung].update(best)
            rung, keys = rung + 1, best
            self._current = (rung, keys)

    def _schedule_state(self, index: dict[str, int]) -> dict[str, Any]:
        current = None if self._current is None else [self._current[0], [index[k] for k in self._current[1]]]
        return {"bracket": self._bracket, "current": current}

    def _load_schedule(self, state: dict[str, Any], keys: list[str]) -> None:
        self._bracket = int(state.get("bracket", 0))
        current = state.get("current")
        self._current = None if current is None else (int(current[0]), [keys[i] for i in current[1]])


class SuccessiveHalving(Hyperband):
    """Successive halving: ``n_models`` random models (default ``eta**s_max``, so one reaches the top)
    on ``min_budget``, the best ``1/eta`` promoted rung by rung to ``max_budget``; then again with
    new models while the trial budget lasts. Hyperband's most aggressive bracket, on its own."""

    def __init__(self, min_budget: float = 1, max_budget: float = 81, eta: float = 3, *,
                 n_models: int | None = None, seed: int | None = None, dedup: bool = True) -> None:
        super().__init__(min_budget, max_budget, eta, seed=seed, dedup=dedup)
        if n_models is not None and (isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 1):
            raise ValueError(f"SuccessiveHalving: n_models must be a positive int or None, got {n_models!r}.")
        self.n_models = n_models

    def _brackets(self) -> list[tuple[int, int]]:
        return [(self.n_models or math.ceil(self.eta ** self.top), 0)]


class ASHA(_MultiFidelity):
    """Asynchronous successive halving: no rung waits for stragglers.

    Whenever a worker is free, the best model of the highest rung that is in the top ``1/eta`` of
    the results recorded at its rung so far, and not yet promoted, goes up one rung; if there is
    none, a new random model starts on ``min_budget``. Runs until the trial budget or the duration
    is spent, keeping every worker busy.
    """

    def __init__(self, min_budget: float = 1, max_budget: float = 81, eta: float = 3, *, seed: int | None = None,
                 dedup: bool = True) -> None:
        super().__init__(min_budget, max_budget, eta, seed, dedup)

    def _run(self) -> None:
        while self.wait_for_worker():
            job = self._promotion()
            if job is None:
                key = self._new_config()
                if key is None:
                    _logger.info("ASHA: no unseen configuration left and nothing to promote; stopping.")
                    break
                job = (key, 0)
            else:
                self._promoted[job[1] - 1].add(job[0])
            self._submit(*job)
        self.engine.wait_models(wait_all=True)

    def _promotion(self) -> tuple[str, int] | None:
        for rung in range(self.top - 1, -1, -1):
            results = self._results[rung]
            top = self._best(rung, list(results), int(len(results) / self.eta))
            for key in top:
                if key not in self._promoted[rung]:
                    return key, rung + 1
        return None
