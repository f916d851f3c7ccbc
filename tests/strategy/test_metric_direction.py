"""An evaluator whose metric is an error (``metric_direction = 'minimize'``, as Regression's MSE):
every strategy and middleware looks for the lowest value, and ``list_models`` ranks lowest first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import nasflow
from nasflow.dashboard.query import StoreView
from nasflow.evaluator import FunctionalEvaluator
from nasflow.evaluator.classification import ClassificationModule, RegressionModule
from nasflow.experiment import NasExperiment, NasExperimentConfig
from nasflow.space import ModelStatus, SimplifiedModelSpace, metric_score
from nasflow.strategy import TPE, Chain, GridSearch, MedianStop, RegularizedEvolution, SuccessiveHalving


def minimized(evaluator: FunctionalEvaluator) -> FunctionalEvaluator:
    evaluator.metric_direction = "minimize"
    return evaluator


def width_error(model: Any) -> None:
    """The sum of widths as an error: the narrowest model (4 x 8 = 32) is the best."""
    nasflow.report_final_result(float(sum(layer.out_features for layer in model.layers)))


def space_of(make_space: Any, evaluate: Any = width_error, **kwargs: Any) -> SimplifiedModelSpace:
    space = make_space(evaluate=evaluate, **kwargs)
    minimized(space.evaluator)
    return space


def test_metric_score_negates_a_minimized_metric() -> None:
    assert metric_score(0.25) == 0.25 and metric_score({"default": 0.25, "x": 1}, "minimize") == -0.25
    assert metric_score(None, "minimize") is None
    assert RegressionModule.metric_direction == "minimize"
    assert ClassificationModule.metric_direction == "maximize"
    assert FunctionalEvaluator(width_error).metric_direction == "maximize"  # NNI's convention by default


@pytest.mark.parametrize("strategy", [
    RegularizedEvolution(population_size=8, sample_size=3, mutation_prob=0.2, seed=0),
    TPE(seed=0, n_startup_trials=8),
], ids=["evolution", "tpe"])
def test_strategies_find_the_lowest_error(make_space, search, strategy) -> None:
    result = search(strategy, space_of(make_space, n_layers=4), budget=60)  # of 256 models
    best = next(result.strategy.list_models(limit=1))
    assert best.metric == 32.0 and best.score == -32.0
    assert best.sample == {"w0": 8, "w1": 8, "w2": 8, "w3": 8}


def test_list_models_ranks_the_lowest_error_first(make_space, search) -> None:
    result = search(GridSearch(shuffle=False), space_of(make_space, n_layers=1), budget=4)
    assert [m.metric for m in result.strategy.list_models()] == [8.0, 16.0, 32.0, 64.0]


def epochs_error(model: Any) -> None:
    """An error that falls with the budget: the narrowest model is the best at every rung."""
    budget = nasflow.trial_budget() or 1
    width = float(sum(layer.out_features for layer in model.layers))
    for step in range(budget):
        nasflow.report_intermediate_result(width / (step + 1))
    nasflow.report_final_result(width / budget)


def test_successive_halving_promotes_the_lowest_errors(make_space, search) -> None:
    result = search(SuccessiveHalving(1, 9, 3, seed=0), space_of(make_space, epochs_error, n_layers=4), budget=13)
    models = list(result.engine.list_models())
    rung0, rung1, rung2 = models[:9], models[9:12], models[12:]
    assert [m.sample for m in rung1] == [m.sample for m in sorted(rung0, key=lambda m: m.metric)[:3]]
    assert rung2[0].sample == min(rung1, key=lambda m: m.metric).sample


def curve(model: Any) -> None:
    width = float(model.layers[0].out_features)
    for _ in range(10):
        nasflow.report_intermediate_result(width)
    nasflow.report_final_result(width)


def test_median_stop_stops_the_high_errors(make_space, search) -> None:
    # grid order: 24, 32, 40 (warmup), then 16 (good), 48 and 56 (bad)
    space = space_of(make_space, curve, n_layers=1, widths=(24, 32, 40, 16, 48, 56))
    result = search(Chain(GridSearch(shuffle=False), MedianStop(warmup=3)), space, budget=10)
    status = {m.sample["w0"]: m.status for m in result.engine.list_models()}
    assert status == {24: ModelStatus.Trained, 32: ModelStatus.Trained, 40: ModelStatus.Trained,
                      16: ModelStatus.Trained, 48: ModelStatus.Interrupted, 56: ModelStatus.Interrupted}


def test_export_cli_and_dashboard_rank_the_lowest_error_first(make_space, tmp_path: Path) -> None:
    """What the experiment recorded (its evaluator's direction) ranks stored results, for every reader."""
    config = NasExperimentConfig("sequential", "simplified", max_trial_number=4, progress=False,
                                 experiment_working_directory=str(tmp_path))
    exp = NasExperiment(space_of(make_space, n_layers=1), None, GridSearch(shuffle=False), config)
    exp.run()
    assert exp.export_top_models(top_k=4) == [{"w0": 8}, {"w0": 16}, {"w0": 32}, {"w0": 64}]

    view = StoreView(tmp_path / exp.id)
    try:
        summary = view.summary()
        assert summary["metric_direction"] == "minimize" and summary["best"]["metric"] == 8.0
        assert [row["metric"] for row in view.export_rows(top_k=2)] == [8.0, 16.0]
        [choice] = view.choices()
        assert {v["value"]: v["best"] for v in choice["values"]} == {8: 8.0, 16: 16.0, 32: 32.0, 64: 64.0}
        assert view.progress()["metric_direction"] == "minimize"
    finally:
        view.close()

    listing = subprocess.run([sys.executable, "-m", "nasflow.cli", "list", "--dir", str(tmp_path)],
                             capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"})
    row = next(line for line in listing.stdout.splitlines() if exp.id in line)
    assert " 8 " in row and " 64 " not in row  # the best column holds the lowest error


def test_a_viewed_experiment_keeps_its_metric_direction(make_space, tmp_path: Path) -> None:
    config = NasExperimentConfig("sequential", "simplified", max_trial_number=2, progress=False,
                                 experiment_working_directory=str(tmp_path))
    exp = NasExperiment(space_of(make_space, n_layers=1), None, GridSearch(shuffle=False), config)
    exp.run()
    viewed = NasExperiment.view(exp.id, experiment_working_directory=str(tmp_path))
    assert {m.metric: m.score for m in viewed.list_models()} == {8.0: -8.0, 16.0: -16.0}
    assert viewed.export_top_models(top_k=1) == [{"w0": 8}]


def test_an_unknown_direction_is_refused_naming_the_evaluator(make_space) -> None:
    """One spelling check, where the direction is read: a typo would otherwise rank finals one way
    (``model.score``) and intermediates the other (``metric_score``)."""
    space = space_of(make_space)
    space.evaluator.metric_direction = "min"
    with pytest.raises(ValueError, match=r"metric_direction must be one of \['maximize', 'minimize'\], got 'min'"):
        _ = space.metric_direction
