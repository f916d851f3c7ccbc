"""Run the ported "Hello, NAS!" tutorial: the tutorial's experiment code, through nasflow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hello_nas import MyModelSpace, evaluate_model

import nasflow as nni
import nasflow.strategy as strategy
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import NasExperiment
from nasflow.nn import LayerChoice, MutableDropout, MutableLinear

pytestmark = pytest.mark.timeout(240)


def test_the_model_space_prints_and_searches_what_the_tutorial_says() -> None:
    model_space = MyModelSpace()
    assert isinstance(model_space.conv2, LayerChoice) and "label='conv2'" in repr(model_space)
    assert isinstance(model_space.dropout1, MutableDropout) and isinstance(model_space.fc1, MutableLinear)
    space = model_space.simplify()
    assert list(space) == ["conv2", "dropout", "feature"]
    assert space["dropout"].values == [0.25, 0.5, 0.75] and space["feature"].values == [64, 128, 256]
    assert model_space(torch.zeros(2, 1, 8, 8)).shape == (2, 10)  # the space runs its default model
    model = model_space.freeze({"conv2": 1, "dropout": 0.5, "feature": 128})
    assert model.fc1.out_features == 128 and model.dropout1.p == 0.5
    assert type(model.conv2).__name__ == "DepthwiseSeparableConv"


def test_the_tutorial_experiment_runs_three_trials(tmp_path: Path) -> None:
    # -- the tutorial, from "Pick an exploration strategy" on --
    model_space = MyModelSpace()
    search_strategy = strategy.Random()  # dedup=False if deduplication is not wanted
    evaluator = FunctionalEvaluator(evaluate_model)
    exp = NasExperiment(model_space, evaluator, search_strategy)

    exp.config.max_trial_number = 3   # spawn 3 trials at most
    exp.config.trial_concurrency = 1  # will run 1 trial concurrently
    exp.config.trial_gpu_number = 0   # will not use GPU
    exp.config.experiment_working_directory = str(tmp_path)  # (the test's: not ~/.nasflow)
    exp.config.progress = False

    assert exp.config.execution_engine.name == "ts" and exp.config.model_format.name == "simplified"
    assert exp.config.training_service.platform == "local"
    exp.config.training_service.use_active_gpu = True  # the tutorial's GPU line, harmless on CPU

    exp.run(port=0)  # the tutorial's port=8081, as any free port: tests may run side by side

    top = exp.export_top_models(formatter="dict")
    assert len(top) == 1 and set(top[0]) == {"conv2", "dropout", "feature"}
    models = exp.list_models()
    assert len(models) == 3 and all(m.status.value == "trained" for m in models)
    assert len({repr(m.sample) for m in models}) == 3  # Random deduplicates
    for model in models:  # accuracy in percent, reported once per epoch and at the end
        assert model.metrics.intermediates == [model.metric] and 0 <= model.metric <= 100
    assert max(m.metric for m in models) > 20  # one short epoch: the best already beats chance (10%)
    best = exp.export_top_models(formatter="instance")[0]
    assert best(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    assert nni.get_default_framework() == "pytorch"
