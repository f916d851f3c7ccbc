"""NNI 3.0's mutable evaluators: arguments that are choices join the space and are frozen per trial."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import nasflow
from nasflow.evaluator import FrozenEvaluator, FunctionalEvaluator
from nasflow.experiment import NasExperiment, NasExperimentConfig
from nasflow.mutable import Categorical, label_scope
from nasflow.nn import LayerChoice, ModelSpace, MutableLinear
from nasflow.space import GraphModelSpace, RawFormatModelSpace, SimplifiedModelSpace
from nasflow.strategy import GridSearch

pytestmark = pytest.mark.timeout(240)


class Net(ModelSpace, label_prefix="net"):
    def __init__(self) -> None:
        super().__init__()
        self.fc = MutableLinear(4, nasflow.choice("width", [2, 3]))
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


def fit(model: nn.Module, learning_rate: float, epochs: int) -> None:
    """Reports what the trial got: a plain learning rate, the model's width."""
    assert isinstance(learning_rate, float) and isinstance(epochs, int), (learning_rate, epochs)
    nasflow.report_intermediate_result({"default": learning_rate, "width": model.fc.out_features})
    nasflow.report_final_result(learning_rate * 1000 + model.fc.out_features)


def evaluator() -> FunctionalEvaluator:
    return FunctionalEvaluator(fit, learning_rate=nasflow.choice("lr", [0.1, 0.01]), epochs=1)


@pytest.mark.parametrize("space_format", [RawFormatModelSpace, SimplifiedModelSpace, GraphModelSpace])
def test_evaluator_choices_join_the_space_and_freeze(space_format: type) -> None:
    space = space_format.from_model(Net(), evaluator())
    assert list(space.simplify()) == ["net/width", "net/act", "lr"]
    model = space.freeze({"net/width": 3, "net/act": 1, "lr": 0.01})
    assert model.sample == {"net/width": 3, "net/act": 1, "lr": 0.01}
    frozen = model.evaluator.get()
    assert isinstance(frozen, FrozenEvaluator) and frozen.arguments == {"learning_rate": 0.01, "epochs": 1}
    assert space.evaluator.arguments["learning_rate"].label == "lr"  # the space's evaluator is untouched
    assert model.executable_model()(torch.zeros(2, 4)).shape == (2, 3)
    with pytest.raises(nasflow.mutable.SampleValidationError, match="0.5 not found in \\[0.1, 0.01\\]"):
        space.freeze({"net/width": 3, "net/act": 1, "lr": 0.5})


def test_an_evaluator_label_shared_with_the_model_is_one_choice() -> None:
    with label_scope("net"):  # NNI's idiom: the evaluator's choice made in the space's scope
        shared = FunctionalEvaluator(fit, learning_rate=Categorical([2, 3], label="width"), epochs=1)
    space = SimplifiedModelSpace.from_model(Net(), shared)
    assert list(space.simplify()) == ["net/width", "net/act"]
    model = space.freeze({"net/width": 2, "net/act": 0})
    assert model.evaluator.arguments["learning_rate"] == 2 and model.executable_model().fc.out_features == 2


def _run(tmp_path: Path, config: NasExperimentConfig) -> list:
    config.experiment_working_directory = str(tmp_path)
    config.progress = False
    exp = NasExperiment(Net(), evaluator(), GridSearch(shuffle=False), config)
    assert exp.run() is True
    return exp.list_models()


def test_the_strategy_samples_evaluator_choices_and_the_sample_holds_them(tmp_path: Path) -> None:
    models = _run(tmp_path, NasExperimentConfig("sequential", "simplified"))
    assert len(models) == 8  # 2 widths x 2 activations x 2 learning rates: every grid point
    assert {m.sample["lr"] for m in models} == {0.1, 0.01}
    for model in models:  # what the trial got is what the sample says
        assert model.metric == model.sample["lr"] * 1000 + model.sample["net/width"]
        assert model.metrics.reported_intermediates[0]["default"] == model.sample["lr"]


def test_trial_workers_get_the_frozen_evaluator(tmp_path: Path) -> None:
    config = NasExperimentConfig("ts", "simplified", "local", max_trial_number=3, trial_concurrency=1)
    models = _run(tmp_path, config)
    assert len(models) == 3 and all(m.status.value == "trained" for m in models)
    for model in models:  # the worker's evaluator had plain values (fit asserts it) from this model's sample
        assert model.metric == model.sample["lr"] * 1000 + model.sample["net/width"]
