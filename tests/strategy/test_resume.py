"""state_dict / load_state_dict: a search stopped half way and resumed by a new strategy object (after a
JSON or pickle round trip) repeats no sample and continues exactly as the uninterrupted seeded run."""

from __future__ import annotations

import json
import pickle

import optuna
import pytest

from nasflow.strategy import TPE, Chain, Deduplication, GridSearch, MedianStop, Random, RegularizedEvolution

optuna.logging.set_verbosity(optuna.logging.WARNING)

STRATEGIES = {
    "random": lambda: Random(seed=7),
    "grid": lambda: GridSearch(seed=7),
    "grid-unshuffled": lambda: GridSearch(shuffle=False),
    "evolution": lambda: RegularizedEvolution(population_size=6, sample_size=2, mutation_prob=0.3, seed=7),
    "evolution-crossover": lambda: RegularizedEvolution(population_size=6, sample_size=3, crossover=True, seed=7),
    "tpe": lambda: TPE(seed=7, n_startup_trials=5),
    "chain": lambda: Chain(Random(seed=7, dedup=False), Deduplication("replace", seed=1), MedianStop(warmup=2)),
}


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("via", ["json", "pickle"])
def test_resume_continues_without_repeating(make_space, search, name, via) -> None:
    make = STRATEGIES[name]
    full = search(make(), make_space(), budget=24).keys
    first = search(make(), make_space(), budget=12)
    state = first.strategy.state_dict()
    state = json.loads(json.dumps(state)) if via == "json" else pickle.loads(pickle.dumps(state))
    second = search(make(), make_space(), budget=12, state=state)
    resumed = first.keys + second.keys
    assert len(resumed) == len(set(resumed)) == 24
    assert resumed == full


@pytest.mark.parametrize("name", ["evolution", "grid", "tpe"])
def test_state_may_be_loaded_before_initialize(make_space, search, name) -> None:
    make = STRATEGIES[name]
    full = search(make(), make_space(), budget=20).keys
    first = search(make(), make_space(), budget=10)
    second = search(make(), make_space(), budget=10, state=first.state(), load_before_initialize=True)
    assert first.keys + second.keys == full


def test_resumed_evolution_keeps_its_population(make_space, search) -> None:
    first = search(STRATEGIES["evolution"](), make_space(), budget=12)
    state = first.state()
    assert len(state["population"]) == 6 and all(isinstance(metric, float) for _, metric in state["population"])
    resumed = STRATEGIES["evolution"]()
    resumed.load_state_dict(state)
    assert resumed.state_dict()["population"] == state["population"]  # kept until initialize decodes it


def test_resumed_tpe_rebuilds_its_study(make_space, search) -> None:
    first = search(STRATEGIES["tpe"](), make_space(), budget=12)
    second = search(STRATEGIES["tpe"](), make_space(), budget=3, state=first.state())
    told_before = len(first.strategy.study.trials)
    assert len(second.strategy.study.trials) >= told_before + 3
    assert [t.params for t in second.strategy.study.trials[:told_before]] == [
        t.params for t in first.strategy.study.trials]


def test_grid_resumed_after_exhaustion_runs_nothing(make_space, search) -> None:
    first = search(GridSearch(seed=0), make_space(n_layers=2), budget=100)
    second = search(GridSearch(seed=0), make_space(n_layers=2), budget=100, state=first.state())
    assert len(first.keys) == 16 and second.keys == []
