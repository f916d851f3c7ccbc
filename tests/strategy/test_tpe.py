"""TPE: finds the best, reproducible, constraints and failures told to Optuna, space mapping."""

from __future__ import annotations

import json
import math

import optuna
import pytest

import nasflow
from nasflow.mutable import Categorical, CategoricalMultiple, Numerical
from nasflow.space import ModelStatus
from nasflow.strategy import TPE
from nasflow.strategy.tpe_space import OptunaSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_finds_the_best_model(make_space, search) -> None:
    result = search(TPE(seed=0, n_startup_trials=8), make_space(n_layers=4), budget=40)  # of 256 models
    best = next(result.strategy.list_models(limit=1))
    assert best.metric == 256.0
    assert len(result.keys) == len(set(result.keys))  # dedup: nothing ran twice


def test_same_seed_same_samples(make_space, search) -> None:
    first = search(TPE(seed=1, n_startup_trials=5), make_space(), budget=15).keys
    again = search(TPE(seed=1, n_startup_trials=5), make_space(), budget=15).keys
    other = search(TPE(seed=2, n_startup_trials=5), make_space(), budget=15).keys
    assert first == again and first != other


def test_every_model_is_a_told_trial(make_space, search) -> None:
    """Each model ran is a COMPLETE trial; extra COMPLETE trials are duplicates told the earlier metric."""
    strategy = TPE(seed=0, n_startup_trials=4)
    result = search(strategy, make_space(), budget=12)
    ran = {tuple(m.sample.values()): m.metric for m in result.engine.list_models()}
    complete = [t for t in strategy.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    told = {(t.params["w0"], t.params["w1"], t.params["w2"]): t.value for t in complete}
    assert told == ran
    assert not [t for t in strategy.study.trials if t.state == optuna.trial.TrialState.RUNNING]


def test_constraint_violations_are_pruned_not_run(make_space, search) -> None:
    strategy = TPE(seed=0, n_startup_trials=4)
    result = search(strategy, make_space(limit=64), budget=10)
    assert all(sum(s.values()) <= 64 for s in result.samples)
    pruned = [t for t in strategy.study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and all(sum(t.params[f"w{i}"] for i in range(3)) > 64 for t in pruned)


def test_failed_models_are_told_fail(make_space, search) -> None:
    def flaky(model) -> None:
        if model.layers[0].out_features == 8:
            raise RuntimeError("broken")
        nasflow.report_final_result(sum(layer.out_features for layer in model.layers))

    strategy = TPE(seed=0, n_startup_trials=4)
    result = search(strategy, make_space(evaluate=flaky), budget=16, continue_on_failure=True)
    failed = [m for m in result.engine.list_models() if m.status == ModelStatus.Failed]
    told = [t for t in strategy.study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and len(told) >= len(failed)


def test_continuous_and_log_parameters(make_space, search) -> None:
    def score(model, lr: float, dropout: float) -> None:
        nasflow.report_final_result(-abs(math.log10(lr) + 2) - abs(dropout - 0.3))

    space = make_space(n_layers=1, evaluate=score, lr=nasflow.loguniform("lr", 1e-4, 1.0),
                       dropout=nasflow.quniform("dropout", 0.0, 0.5, 0.1))
    result = search(TPE(seed=0, n_startup_trials=5), space, budget=30)
    best = next(result.strategy.list_models(limit=1))
    assert best.metric is not None and best.metric > -0.5
    assert all(space.contains(s) for s in result.samples)


def test_optuna_space_maps_every_kind_of_leaf() -> None:
    leaves = {
        "op": Categorical([("conv", 3), ("conv", 5), "skip"], label="op"),
        "act": Categorical(["relu", "gelu"], label="act"),
        "inputs": CategoricalMultiple([0, 1, 2, 3], label="inputs"),
        "pair": CategoricalMultiple(["a", "b", "c"], n_chosen=2, label="pair"),
        "lr": Numerical(1e-4, 1e-1, log_distributed=True, label="lr"),
        "qlr": Numerical(1e-3, 1.0, log_distributed=True, quantize=1e-3, label="qlr"),
        "width": Numerical(10, 100, quantize=8, label="width"),
        "scale": Numerical(mu=1.0, sigma=0.5, label="scale"),
    }
    space = OptunaSpace(leaves)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(200):
        trial = study.ask()
        sample = space.suggest(trial)
        for leaf in leaves.values():
            assert leaf.contains(sample), (leaf, sample)
        assert space.sample_of(space.params_of(sample)) == sample  # the way back, for re-added trials
        study.tell(trial, 0.0)
    assert isinstance(space.distributions["width"], optuna.distributions.FloatDistribution)
    assert space.distributions["width"].step == 8


def test_too_many_combinations_is_a_clear_error() -> None:
    leaf = CategoricalMultiple(list(range(40)), n_chosen=20, label="big")
    with pytest.raises(ValueError, match="'big'.*n_chosen=None"):
        OptunaSpace({"big": leaf})


def test_unknown_argument_names_it_and_says_where_it_went() -> None:
    with pytest.raises(TypeError, match="bogus.*TPESampler"):
        TPE(bogus=1)


def test_sampler_options_are_passed_on() -> None:
    strategy = TPE(seed=0, n_startup_trials=3, n_ei_candidates=7)
    assert isinstance(strategy._sampler, optuna.samplers.TPESampler)
    assert (strategy._sampler._n_startup_trials, strategy._sampler._n_ei_candidates) == (3, 7)
    with pytest.raises(ValueError, match="n_startup_trials must be at least 0"):
        TPE(n_startup_trials=-1)


def test_stops_when_the_space_is_exhausted(make_space, search) -> None:
    result = search(TPE(seed=0, n_startup_trials=2), make_space(n_layers=1), budget=50)
    assert sorted(s["w0"] for s in result.samples) == [8, 16, 32, 64]


def test_state_is_the_seed_and_an_append_only_history(make_space, search) -> None:
    """No sampler or RNG state: a saved state is a prefix of every later one, and a search without a
    seed resumes exactly as one given the seed it picked (kept in the state)."""
    first = search(TPE(n_startup_trials=4), make_space(), budget=8)
    state = first.strategy.state_dict()
    assert set(state) == {"seed", "history"} and isinstance(state["seed"], int)
    second = search(TPE(n_startup_trials=4), make_space(), budget=8, state=json.loads(json.dumps(state)))
    assert second.strategy.state_dict()["history"][: len(state["history"])] == state["history"]
    whole = search(TPE(seed=state["seed"], n_startup_trials=4), make_space(), budget=16)
    assert first.keys + second.keys == whole.keys
    assert whole.strategy.state_dict() == second.strategy.state_dict()
