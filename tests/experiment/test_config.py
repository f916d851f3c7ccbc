"""NasExperimentConfig: inference, validation, field names; refusals happen before anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.execution import SequentialExecutionEngine, TrainingServiceExecutionEngine
from nasflow.experiment import ConfigError, NasExperiment, NasExperimentConfig
from nasflow.experiment.config import parse_duration
from nasflow.experiment.engines import build_engine
from nasflow.nn import ModelSpace, MutableLinear
from nasflow.strategy import Random, Strategy
from nasflow.training_service import LocalTrainingService


class OneShot(Strategy):
    """Marked one-shot, as DARTS and friends are; it never gets to run in these tests."""

    one_shot = True

    def _run(self) -> None:
        raise AssertionError("a refused experiment must not run its strategy")


class Tiny(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.fc = MutableLinear(2, nasflow.choice("width", [1, 2]))

    def forward(self, x: Any) -> Any:
        return self.fc(x)


def evaluate(model: nn.Module) -> None:
    raise AssertionError("a refused experiment must not train anything")


# ----- inference ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "strategy", "expected"),
    [
        (None, OneShot(), ("sequential", "raw", None)),
        (None, Random(), ("training_service", "simplified", "local")),
        (NasExperimentConfig("cgo"), Random(), ("cgo", "graph", "local")),
        (NasExperimentConfig("ts"), Random(), ("training_service", "simplified", "local")),
        (NasExperimentConfig("sequential"), Random(), ("sequential", "simplified", None)),
        (NasExperimentConfig("sequential", "raw"), OneShot(), ("sequential", "raw", None)),
        (NasExperimentConfig(model_format="graph"), Random(), ("training_service", "graph", "local")),
        (NasExperimentConfig("ts", "simplified", "ray"), Random(), ("training_service", "simplified", "ray")),
    ],
    ids=["one-shot", "multi-trial", "cgo", "ts-alias", "sequential-debug", "one-shot-explicit", "graph", "ray"],
)
def test_inference_table(config: NasExperimentConfig | None, strategy: Strategy, expected: tuple) -> None:
    given = config or NasExperimentConfig()
    before = dict(vars(given))
    canonical = given.canonical(strategy)
    assert (canonical.execution_engine, canonical.model_format, canonical.training_service) == expected
    assert vars(given) == before  # the user's config is not modified


def test_canonical_config_is_recorded_as_json() -> None:
    config = NasExperimentConfig(max_trial_number=3, trial_timeout="2m").canonical(Random())
    data = json.loads(json.dumps(config.to_dict()))
    assert data["execution_engine"] == "training_service" and data["trial_timeout"] == "2m"


# ----- refusals ----------------------------------------------------------------------------------

INVALID = [
    ("raw-on-ts", dict(execution_engine="ts", model_format="raw"), Random(), "model_format"),
    ("raw-on-cgo", dict(execution_engine="cgo", model_format="raw"), Random(), "model_format"),
    ("cgo-simplified", dict(execution_engine="cgo", model_format="simplified"), Random(), "model_format"),
    ("one-shot-on-ts", dict(execution_engine="ts"), OneShot(), "execution_engine"),
    ("one-shot-simplified", dict(execution_engine="sequential", model_format="simplified"), OneShot(),
     "model_format"),
    ("sequential-service", dict(execution_engine="sequential", training_service="local"), Random(),
     "training_service"),
    ("sequential-concurrency", dict(execution_engine="sequential", trial_concurrency=2), Random(),
     "trial_concurrency"),
    ("sequential-gpus", dict(execution_engine="sequential", trial_gpu_number=1), Random(), "trial_gpu_number"),
    ("sequential-timeout", dict(execution_engine="sequential", trial_timeout=5), Random(), "trial_timeout"),
    ("sequential-reuse", dict(execution_engine="sequential", reuse_mode=True), Random(), "reuse_mode"),
    ("sequential-threads", dict(execution_engine="sequential", threads_per_trial=2), Random(),
     "threads_per_trial"),
    ("unknown-engine", dict(execution_engine="fast"), Random(), "execution_engine"),
    ("unknown-format", dict(model_format="onnx"), Random(), "model_format"),
    ("unknown-service", dict(training_service="kubernetes"), Random(), "training_service"),
    ("service-object", dict(training_service=object()), Random(), "training_service"),
    ("cgo-option-without-cgo", dict(max_concurrency_cgo=2), Random(), "max_concurrency_cgo"),
    ("batch-wait-without-cgo", dict(batch_waiting_time=1.0), Random(), "batch_waiting_time"),
    ("negative-batch-wait", dict(execution_engine="cgo", batch_waiting_time=-1), Random(), "batch_waiting_time"),
    ("zero-concurrency", dict(trial_concurrency=0), Random(), "trial_concurrency"),
    ("negative-trials", dict(max_trial_number=-1), Random(), "max_trial_number"),
    ("bool-trials", dict(max_trial_number=True), Random(), "max_trial_number"),
    ("float-trials", dict(max_trial_number=2.5), Random(), "max_trial_number"),
    ("bad-duration", dict(max_experiment_duration="ten minutes"), Random(), "max_experiment_duration"),
    ("zero-duration", dict(max_experiment_duration=0), Random(), "max_experiment_duration"),
    ("bad-timeout", dict(trial_timeout="0s"), Random(), "trial_timeout"),
    ("negative-gpus", dict(trial_gpu_number=-1), Random(), "trial_gpu_number"),
    ("bad-gpu-list", dict(gpu_indices=[0, -1]), Random(), "gpu_indices"),
    ("too-few-gpus", dict(trial_gpu_number=2, gpu_indices=[0]), Random(), "trial_gpu_number"),
    ("zero-per-gpu", dict(max_trial_number_per_gpu=0), Random(), "max_trial_number_per_gpu"),
]


@pytest.mark.parametrize(("fields", "strategy", "field"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid_config_is_refused_before_anything_runs(tmp_path: Path, fields: dict[str, Any],
                                                         strategy: Strategy, field: str) -> None:
    config = NasExperimentConfig(experiment_working_directory=str(tmp_path / "exps"), progress=False, **fields)
    with pytest.raises(ConfigError) as info:
        config.canonical(strategy)
    assert info.value.field == field
    assert str(info.value).startswith(f"NasExperimentConfig.{field}: ")

    experiment = NasExperiment(Tiny(), FunctionalEvaluator(evaluate), strategy, config)
    with pytest.raises(ConfigError) as again:
        experiment.run()
    assert again.value.field == field
    assert not (tmp_path / "exps").exists()  # no directory, no store
    assert isinstance(again.value, ValueError)


def test_refusals_say_how_to_fix_them() -> None:
    with pytest.raises(ConfigError, match=r"use 'simplified' \(or 'graph'\).*'sequential' engine for raw"):
        NasExperimentConfig("ts", "raw").canonical(Random())
    with pytest.raises(ConfigError, match=r"NasExperimentConfig\('sequential', 'raw'\)"):
        NasExperimentConfig("ts").canonical(OneShot())
    with pytest.raises(ConfigError, match=r"needs the graph format: NasExperimentConfig\('cgo', 'graph'"):
        NasExperimentConfig("cgo", "simplified").canonical(Random())
    with pytest.raises(ConfigError, match="use 'sequential', 'ts' or 'cgo'"):
        NasExperimentConfig("fast").canonical(Random())


# ----- field names -------------------------------------------------------------------------------


def test_unknown_field_in_the_constructor_suggests_the_right_name() -> None:
    hint = r"max_trial_numbr: no such field\. Did you mean 'max_trial_number'\?"
    with pytest.raises(ConfigError, match=hint) as info:
        NasExperimentConfig(max_trial_numbr=3)
    assert info.value.field == "max_trial_numbr"


def test_unknown_field_set_as_an_attribute_suggests_the_right_name() -> None:
    config = NasExperimentConfig()
    with pytest.raises(ConfigError, match="Did you mean 'trial_concurrency'"):
        config.trial_concurency = 2
    with pytest.raises(ConfigError, match="no such field. Known fields: .*max_trial_number"):
        config.zzz = 1
    config.max_trial_number = 4  # known fields are plain attributes
    assert config.max_trial_number == 4


def test_positional_fields_and_keywords() -> None:
    config = NasExperimentConfig("ts", "simplified", "local", max_trial_number=5, trial_concurrency=2)
    assert (config.execution_engine, config.model_format, config.training_service) == ("ts", "simplified", "local")
    assert config.max_trial_number == 5 and config.trial_concurrency == 2
    with pytest.raises(TypeError):
        NasExperimentConfig("ts", execution_engine="sequential")


@pytest.mark.parametrize(("text", "seconds"), [(45, 45.0), (1.5, 1.5), ("90s", 90.0), ("30m", 1800.0),
                                                ("2h", 7200.0), ("1d", 86400.0), ("12", 12.0), (None, None)])
def test_durations(text: Any, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


# ----- engines built from a config ---------------------------------------------------------------


def test_engines_follow_the_config(tmp_path: Path) -> None:
    sequential = build_engine(NasExperimentConfig("sequential", max_trial_number=3,
                                                  max_experiment_duration="1m").canonical(Random()), tmp_path)
    assert isinstance(sequential, SequentialExecutionEngine)
    assert (sequential.budget.max_trials, sequential.budget.max_duration) == (3, 60.0)

    config = NasExperimentConfig("ts", trial_concurrency=2, trial_timeout="30s", reuse_mode=True,
                                 max_trial_number=7).canonical(Random())
    engine = build_engine(config, tmp_path)
    assert isinstance(engine, TrainingServiceExecutionEngine)
    assert (engine.trial_concurrency, engine.trial_timeout, engine.budget.max_trials) == (2, 30.0, 7)
    assert isinstance(engine.service, LocalTrainingService) and engine.service.reuse_mode
    assert engine.service.server_pid is None  # nothing starts until a model is submitted
    engine.shutdown()


def test_a_training_service_object_is_accepted_and_used(tmp_path: Path) -> None:
    service = LocalTrainingService(trial_concurrency=2, log_dir=tmp_path)
    config = NasExperimentConfig("ts", "simplified", service, trial_concurrency=2).canonical(Random())
    assert config.training_service is service
    engine = build_engine(config, tmp_path)
    assert isinstance(engine, TrainingServiceExecutionEngine) and engine.service is service
    assert isinstance(json.dumps(config.to_dict()), str)
    engine.shutdown()
