"""TPE: finds the best, reproducible, constraints and failures told to Optuna, space mapping."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import nasflow
from nasflow.mutable import Categorical, CategoricalMultiple, Numerical
from nasflow.space import ModelStatus
from nasflow.strategy import TPE
from nasflow.strategy.tpe_sampler import CountedTPESampler, TrialWindow, _WindowedStudy
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


# ---- the window of trials TPE models (max_history) ------------------------------------------------------
def _kept(trials: list[optuna.trial.FrozenTrial], size: int) -> list[optuna.trial.FrozenTrial]:
    """What a window of ``size`` keeps, spelled out: the ``size`` most recent COMPLETE or PRUNED trials,
    and the best 25 COMPLETE ones before them (ties: the earlier), in trial order."""
    ended = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    older = [t for t in ended[:-size] if t.state == TrialState.COMPLETE]
    best = sorted(older, key=lambda t: (-t.value, t.number))[:25]
    return sorted(best + ended[-size:], key=lambda t: t.number)


def _random_trials(n: int, seed: int) -> tuple[list[optuna.trial.FrozenTrial], dict[str, Any]]:
    rng = random.Random(seed)
    distributions = {"w": optuna.distributions.CategoricalDistribution([8, 16, 32, 64]),
                     "act": optuna.distributions.CategoricalDistribution(["relu", "gelu", "tanh"]),
                     "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
                     "p": optuna.distributions.FloatDistribution(0.0, 0.5)}
    trials = []
    for _ in range(n):
        params = {"w": rng.choice([8, 16, 32, 64]), "act": rng.choice(["relu", "gelu", "tanh"]),
                  "lr": 10 ** rng.uniform(-4, -1), "p": rng.uniform(0, 0.5)}
        state = rng.choices([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL], [8, 1, 1])[0]
        trials.append(optuna.trial.create_trial(
            state=state, params=params, distributions=distributions,
            value=round(rng.random(), 1) if state == TrialState.COMPLETE else None,  # rounded: ties at the cut
            intermediate_values={0: rng.random()} if state == TrialState.PRUNED else {}))
    return trials, distributions


def _draw(study: optuna.Study, distributions: dict[str, Any]) -> dict[str, Any]:
    trial = study.ask()
    return {name: trial._suggest(name, distribution) for name, distribution in distributions.items()}


@pytest.mark.parametrize("options", [{}, {"multivariate": False, "constant_liar": False}])
def test_a_window_draws_what_tpe_draws_from_the_trials_it_keeps(monkeypatch, options) -> None:
    """On a long study the windowed sampler draws exactly what Optuna's TPE draws on a study of only
    the kept trials, with its good group sized by all the trials ended, as Optuna sizes it on the
    whole study (random numbers fixed alike): the window is the model, nothing else changes."""
    def same_numbers(self, study, trial) -> None:
        for generator in self._generators():
            generator.seed(7)

    monkeypatch.setattr(CountedTPESampler, "before_trial", same_numbers)
    trials, distributions = _random_trials(300, seed=3)
    good = min(math.ceil(0.1 * sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)), 25)
    for size in (40, 120):
        windowed = optuna.create_study(direction="maximize", sampler=CountedTPESampler(
            seed=0, window=TrialWindow(size), n_startup_trials=5, **options))
        windowed.add_trials(trials)
        reference = CountedTPESampler(seed=0, n_startup_trials=5, **options)
        reference._gamma = lambda n: good  # sized as on the whole study (Optuna's gamma argument is deprecated)
        kept = optuna.create_study(direction="maximize", sampler=reference)
        kept.add_trials(_kept(windowed.trials, size))
        assert _draw(windowed, distributions) == _draw(kept, distributions)
        assert [t.params for t in windowed.sampler.window.trials()] == [t.params for t in kept.trials[:-1]]


def test_the_best_trials_outlive_the_window() -> None:
    window = TrialWindow(3, n_best=2)
    trials, _ = _random_trials(40, seed=5)
    study = optuna.create_study(direction="maximize")
    study.add_trials(trials)
    window.update(study)
    kept = window.trials()
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value)
    assert best in kept and len(kept) == 5
    assert [t.number for t in kept[-3:]] == [t.number for t in study.trials
                                             if t.state in (TrialState.COMPLETE, TrialState.PRUNED)][-3:]


def test_up_to_max_history_trials_the_search_is_optuna_s_whole(make_space, search) -> None:
    whole = search(TPE(seed=4, n_startup_trials=4, max_history=None), make_space(), budget=30)
    window = search(TPE(seed=4, n_startup_trials=4, max_history=30), make_space(), budget=30)
    assert whole.keys == window.keys


def test_tpe_models_no_more_than_max_history_and_the_best(make_space, search, monkeypatch) -> None:
    """The trials TPE's sampler reads are the window's, however long the search: the cost of a trial
    stays flat."""
    seen: list[int] = []
    read = _WindowedStudy._get_trials

    def counted(self, *args, **kwargs):
        trials = read(self, *args, **kwargs)
        seen.append(len(trials))
        return trials

    monkeypatch.setattr(_WindowedStudy, "_get_trials", counted)
    strategy = TPE(seed=0, n_startup_trials=4, max_history=8, dedup=False)
    search(strategy, make_space(n_layers=4), budget=60)
    assert len(strategy.study.trials) >= 60
    assert seen and max(seen) <= 8 + 25 + 1  # the window, the best kept, the trial being asked
    assert seen[-1] <= 8 + 25 + 1 < len(strategy.study.trials)


def test_a_resumed_search_keeps_the_same_window(make_space, search) -> None:
    """Past max_history a resumed search still draws what the uninterrupted one draws."""
    whole = search(TPE(seed=6, n_startup_trials=4, max_history=6), make_space(n_layers=4), budget=30)
    first = search(TPE(seed=6, n_startup_trials=4, max_history=6), make_space(n_layers=4), budget=15)
    second = search(TPE(seed=6, n_startup_trials=4, max_history=6), make_space(n_layers=4), budget=15,
                    state=first.state())
    assert first.keys + second.keys == whole.keys


def test_max_history_is_checked() -> None:
    with pytest.raises(ValueError, match=r"max_history \(5\) must be at least n_startup_trials \(10\)"):
        TPE(max_history=5)
    with pytest.raises(TypeError, match="max_history must be an int or None"):
        TPE(max_history=2.5)
    with pytest.raises(ValueError, match="a custom gamma needs max_history=None"):
        TPE(gamma=lambda n: 5)
