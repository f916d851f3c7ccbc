"""``RegularizedEvolution``: aging evolution (Real et al., 2019, "Regularized Evolution for Image
Classifier Architecture Search")."""

from __future__ import annotations

import logging
import math
import random
import warnings
from collections import deque
from typing import Any

from nasflow.execution import ExecutionEngine, ModelEvent, ModelEventType
from nasflow.mutable import Categorical, CategoricalMultiple, LabeledMutable, Numerical, Sample
from nasflow.space import ExecutableModelSpace

from .base import Strategy
from .utils import (
    DedupFilter,
    EventHooks,
    SampleCodec,
    check_int,
    check_probability,
    check_seed,
    remaining_trials,
    rng_state,
    sample_key,
    set_rng_state,
    value_leaves,
)

__all__ = ["RegularizedEvolution"]

_logger = logging.getLogger(__name__)

_REDRAWS = 100  # draws to find a value different from the parent's for one label
_RANDOM_DRAWS = 1000  # draws to find an unseen random sample before calling the space exhausted


class RegularizedEvolution(Strategy):
    """Aging evolution.

    Random models fill a population of ``population_size``; then each new model is a mutation of the
    best of ``sample_size`` individuals drawn at random from the population (with ``crossover``,
    of a uniform mix of two such winners). Each label is mutated with ``mutation_prob``, at least one
    always. Every evaluated model joins the population and the oldest one dies, which favours
    architectures that stay good when retrained over lucky ones.

    It is asynchronous: it submits while workers are idle and learns from each model as it ends.
    A model counts when it ends with a metric (so ``FailureHandler(metric=...)`` penalties count);
    one without is dropped. ``dedup`` never submits a sample twice, retrying a mutation up to
    ``dedup_retries`` times and then falling back to a fresh random sample.
    """

    def __init__(self, population_size: int = 100, sample_size: int = 25, mutation_prob: float = 0.05,
                 crossover: bool = False, dedup: bool = True, dedup_retries: int = 500,
                 seed: int | None = None) -> None:
        super().__init__()
        owner = "RegularizedEvolution"
        self.population_size = check_int(owner, "population_size", population_size, 1)
        self.sample_size = check_int(owner, "sample_size", sample_size, 1)
        if self.sample_size > self.population_size:  # type: ignore[operator]
            raise ValueError(
                f"{owner}: sample_size ({sample_size}) must not exceed population_size ({population_size}), "
                "since the tournament draws sample_size individuals from the population. "
                "Lower sample_size or raise population_size."
            )
        self.mutation_prob = check_probability(owner, "mutation_prob", mutation_prob)
        self.crossover = bool(crossover)
        self.dedup = DedupFilter() if dedup else None
        self.dedup_retries = check_int(owner, "dedup_retries", dedup_retries, 0)
        self.seed = check_seed(owner, seed)
        self._rng = random.Random(seed)
        self._population: deque[tuple[Sample, float]] = deque()
        self._running: dict[int, ExecutableModelSpace] = {}
        self._leaves: dict[str, LabeledMutable] = {}
        self._codec: SampleCodec | None = None
        self._hooks = EventHooks()
        self._pending_state: dict[str, Any] | None = None

    # ---- lifecycle ----------------------------------------------------------------------------
    def _initialize(self, model_space: ExecutableModelSpace, engine: ExecutionEngine) -> ExecutableModelSpace:
        self._leaves = value_leaves(model_space.simplify())
        self._codec = SampleCodec(self._leaves)
        if self._pending_state is not None:
            self._restore_population(self._pending_state)
            self._pending_state = None
        self._hooks.register(engine, ModelEventType.TrainingEnd, self._on_training_end)
        return model_space

    def _cleanup(self) -> None:
        self._hooks.clear()

    def _run(self) -> None:
        self._warn_if_budget_too_small()
        while self.wait_for_worker():
            model = self._next_model()
            if model is None:
                _logger.info("RegularizedEvolution: no unseen sample left to try; stopping.")
                break
            self._running[id(model)] = model
            self.engine.submit_models(model)
        self.engine.wait_models(wait_all=True)

    def _on_training_end(self, event: ModelEvent) -> None:
        model = event.model
        self._running.pop(id(model), None)
        if model.sample is None or model.score is None:
            return
        self._population.append((dict(model.sample), model.score))
        while len(self._population) > self.population_size:  # type: ignore[operator]
            self._population.popleft()  # the oldest dies, however good it was

    def _warn_if_budget_too_small(self) -> None:
        """Aging evolution spends its first ``population_size`` models on random samples; with a trial
        budget that leaves fewer mutations than that, it is (mostly) random search. Say so up front."""
        left = remaining_trials(self.engine)
        if left is None:
            return
        random_first = max(self.population_size - len(self._population), 0)  # type: ignore[operator]
        mutants = max(left - random_first, 0)
        if mutants >= self.population_size:  # type: ignore[operator]
            return
        population = max(left // 5, 2)
        message = (
            f"RegularizedEvolution: the budget leaves {left} models and population_size is {self.population_size}, "
            f"so {min(random_first, left)} of them are random samples filling the population and only {mutants} "
            "are mutations: this search is (mostly) random search. Lower population_size (and sample_size), e.g. "
            f"population_size={population}, sample_size={max(population // 4, 1)}, or raise max_trial_number "
            f"to at least {random_first + self.population_size}."  # type: ignore[operator]
        )
        warnings.warn(message, UserWarning, stacklevel=3)

    # ---- proposing ----------------------------------------------------------------------------
    def _next_model(self) -> ExecutableModelSpace | None:
        filling = len(self._population) + len(self._running) < self.population_size  # type: ignore[operator]
        if filling or not self._population:
            return self._random_model()
        for _ in range(self.dedup_retries + 1):  # type: ignore[operator]
            child = self._mutate(self._parent())
            if not self.model_space.contains(child):
                continue
            if self.dedup is None or self.dedup.add(child):
                return self.model_space.freeze(child)
        _logger.debug("RegularizedEvolution: %d mutations were all seen before; drawing at random.",
                      self.dedup_retries)
        return self._random_model()

    def _random_model(self) -> ExecutableModelSpace | None:
        for _ in range(_RANDOM_DRAWS):
            model = self.model_space.random(random_state=self._rng)
            if self.dedup is None or self.dedup.add(model.sample):
                return model
        return None

    def _tournament(self) -> Sample:
        size = min(self.sample_size, len(self._population))  # type: ignore[type-var]
        contenders = self._rng.sample(list(self._population), size)
        return max(contenders, key=lambda entry: entry[1])[0]

    def _parent(self) -> Sample:
        first = self._tournament()
        if not self.crossover:
            return dict(first)
        second = self._tournament()
        return {label: (first if self._rng.random() < 0.5 else second)[label] for label in first}

    def _mutate(self, parent: Sample) -> Sample:
        child = dict(parent)
        mutable = [label for label, leaf in self._leaves.items() if label in parent and _can_vary(leaf)]
        chosen = [label for label in mutable if self._rng.random() < self.mutation_prob]
        if not chosen and mutable:
            chosen = [self._rng.choice(mutable)]
        for label in chosen:
            child[label] = self._other_value(self._leaves[label], parent[label])
        return child

    def _other_value(self, leaf: LabeledMutable, current: Any) -> Any:
        if isinstance(leaf, Categorical):
            others = [i for i, v in enumerate(leaf.values) if sample_key(v) != sample_key(current)]
            weights = [leaf.weights[i] for i in others] if leaf.weights else None
            if weights is not None and sum(weights) > 0:
                return leaf.values[self._rng.choices(others, weights=weights)[0]]
            return leaf.values[self._rng.choice(others)]
        value = current
        for _ in range(_REDRAWS):
            value = leaf.random(None, self._rng)
            if sample_key(value) != sample_key(current):
                break
        return value

    # ---- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        population = [[self._encode(sample), metric] for sample, metric in self._population]
        if self._pending_state is not None:  # loaded but not initialized yet: keep what was loaded
            population = self._pending_state["population"]
        return {
            "rng": rng_state(self._rng),
            "population": population,
            "seen": self.dedup.state_dict() if self.dedup is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("rng") is not None:
            set_rng_state(self._rng, state["rng"])
        if self.dedup is not None and state.get("seen") is not None:
            self.dedup.load_state_dict(state["seen"])
        if self._codec is None:
            self._pending_state = {"population": list(state.get("population", []))}
        else:
            self._restore_population({"population": state.get("population", [])})

    def _encode(self, sample: Sample) -> dict[str, Any]:
        assert self._codec is not None
        return self._codec.encode(sample)

    def _restore_population(self, state: dict[str, Any]) -> None:
        assert self._codec is not None
        self._population = deque((self._codec.decode(s), float(m)) for s, m in state["population"])
        while len(self._population) > self.population_size:  # type: ignore[operator]
            self._population.popleft()


def _can_vary(leaf: LabeledMutable) -> bool:
    """Whether a label has more than one value to mutate to."""
    if isinstance(leaf, Categorical):
        return len(leaf.values) > 1
    if isinstance(leaf, CategoricalMultiple):
        n = len(leaf.values)
        return leaf.n_chosen is None or math.comb(n, leaf.n_chosen) > 1
    if isinstance(leaf, Numerical):
        return leaf.is_normal or leaf.low < leaf.high
    return True
