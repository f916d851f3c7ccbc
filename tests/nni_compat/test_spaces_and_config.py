"""nni.nas.space, experiment config objects, strategy arguments and the nni.* helpers, as NNI 3.0 documents them."""

from __future__ import annotations

import pytest

import nasflow as nni
from nasflow.common.serializer import is_traceable
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import NasExperiment, NasExperimentConfig
from nasflow.experiment.config import (
    CgoEngineConfig,
    ConfigError,
    ExecutionEngineConfig,
    GraphModelFormatConfig,
    LocalConfig,
    ModelFormatConfig,
    RawModelFormatConfig,
    SequentialEngineConfig,
    TrainingServiceEngineConfig,
)
from nasflow.mutable import Categorical, ensure_frozen
from nasflow.mutable.mutable import _mutable_equal
from nasflow.space import BaseModelSpace, Metrics, ModelStatus, RawFormatModelSpace, current_model, model_context
from nasflow.strategy import GridSearch, Random, RegularizedEvolution


@nni.trace
class MyModelSpace(BaseModelSpace):
    """A model space without torch: two choices and a model that adds them (NNI's example)."""

    def __init__(self) -> None:
        self.a = Categorical([1, 2, 3], label="a")
        self.b = Categorical([4, 5, 6, 7], label="b")
        if current_model() is not None:
            self.a1, self.b1 = ensure_frozen(self.a), ensure_frozen(self.b)

    def call(self, x: int) -> int:
        return x + self.a1 + self.b1

    def leaf_mutables(self, is_leaf):  # noqa: ANN001, ANN201
        yield from [self.a, self.b]

    def check_contains(self, sample):  # noqa: ANN001, ANN201
        return self.a.check_contains(sample) or self.b.check_contains(sample)

    def freeze(self, sample):  # noqa: ANN001, ANN201
        with model_context(sample):
            return MyModelSpace()


def foo(model: MyModelSpace, a: int) -> int:
    return model.call(a)


def test_raw_format_keeps_any_model_space() -> None:
    exec_model = RawFormatModelSpace.from_model(MyModelSpace(), FunctionalEvaluator(foo, a=Categorical([0, 1],
                                                                                                        label="c")))
    assert exec_model.sample is None and exec_model.status == ModelStatus.Initialized and exec_model.metric is None
    assert _mutable_equal(exec_model.simplify(), {"a": Categorical([1, 2, 3], label="a"),
                                                  "b": Categorical([4, 5, 6, 7], label="b"),
                                                  "c": Categorical([0, 1], label="c")})
    assert exec_model.contains({"a": 1, "b": 4, "c": -1}) is False and exec_model.contains({"a": 0, "b": 4, "c": 0}) \
        is False
    assert repr(exec_model).startswith("RawFormatModelSpace(model_space=MyModelSpace(), evaluator=FunctionalEvaluator(")
    assert repr(exec_model).endswith(
        "arguments={'a': Categorical([0, 1], label='c')}), status=ModelStatus.Initialized)")
    frozen = exec_model.freeze({"a": 2, "b": 6, "c": 1})
    assert frozen.status == ModelStatus.Frozen and frozen.sample == {"a": 2, "b": 6, "c": 1}
    assert frozen.evaluator.evaluate(frozen.executable_model()) == 9
    frozen.metrics.add_intermediate(1)
    frozen.metrics.final = 2
    assert repr(frozen).endswith(", metrics=Metrics(intermediates=<array of length 1>, final=2.0), "
                                 "status=ModelStatus.Frozen)")
    with pytest.raises(RuntimeError, match="not initialized"):
        frozen.freeze({"a": 1, "b": 5, "c": 0})
    with pytest.raises(NotImplementedError):
        exec_model._dump()


def test_model_status() -> None:
    assert not ModelStatus.Initialized.frozen() and not ModelStatus.Initialized.completed()
    assert ModelStatus.Frozen.frozen() and not ModelStatus.Frozen.completed()
    assert ModelStatus.Frozen == "frozen" and ModelStatus.Frozen != "initialized"
    for status in (ModelStatus.Trained, ModelStatus.Interrupted, ModelStatus.Failed):
        assert status.frozen() and status.completed()


def test_metrics_keep_numbers_unless_not_strict() -> None:
    metrics = Metrics()
    metrics.add_intermediate(0.6)
    metrics.add_intermediate({"default": 0.7})
    metrics.add_intermediate({"default": 0.8, "accuracy": 0.9})
    metrics.final = 1
    assert metrics.intermediates == [0.6, 0.7, 0.8] and metrics.final == 1.0 and isinstance(metrics.final, float)
    metrics.final = {"default": 1.1}
    assert metrics.final == 1.1 and metrics.reported_final == {"default": 1.1}
    with pytest.raises(ValueError, match="default"):
        metrics.final = {"hello": 1.1}
    with pytest.raises(ValueError, match="not a number"):
        metrics.final = "hello"
    metrics.clear()
    assert metrics.intermediates == [] and metrics.final is None
    loose = Metrics(strict=False)
    for value in (0.6, {"default": 0.7}, [3, 4, 5]):
        loose.add_intermediate(value)
    loose.final = (3, 5)
    assert loose.intermediates == [0.6, {"default": 0.7}, [3, 4, 5]] and loose.final == (3, 5)


def test_engine_format_and_service_config_objects() -> None:
    assert isinstance(ExecutionEngineConfig(name="ts"), TrainingServiceEngineConfig)
    assert isinstance(ExecutionEngineConfig(name="sequential"), SequentialEngineConfig)
    assert TrainingServiceEngineConfig().json() == {"name": "ts"}
    assert ExecutionEngineConfig(name="sequential", continue_on_failure=True, max_duration=1).max_duration == 1
    assert ExecutionEngineConfig(name="cgo", max_concurrency_cgo=1, batch_waiting_time=1).batch_waiting_time == 1
    with pytest.raises(ValueError, match="Invalid ExecutionEngineConfig subclass"):
        ExecutionEngineConfig(name="wrong")
    assert isinstance(ExecutionEngineConfig(), ExecutionEngineConfig)
    assert isinstance(ModelFormatConfig(name="raw"), RawModelFormatConfig)
    assert ModelFormatConfig(name="graph", dummy_input=[1, 2, 3]).dummy_input == [1, 2, 3]
    assert LocalConfig(use_active_gpu=True).json() == {"platform": "local", "useActiveGpu": True}


def test_experiment_config_json_and_default() -> None:
    config = NasExperimentConfig("ts", "simplified", "local")
    config.trial_concurrency = 2
    data = config.json()
    assert data["executionEngine"] == {"name": "ts"} and data["modelFormat"] == {"name": "simplified"}
    assert data["trainingService"]["platform"] == "local" and data["trialConcurrency"] == 2
    assert config.execution_engine.name == "ts" and config.execution_engine == "ts"
    default = NasExperimentConfig.default(MyModelSpace(), None, Random())
    assert (default.execution_engine.name, default.model_format.name, default.training_service.platform) == (
        "ts", "simplified", "local")
    config = NasExperimentConfig(execution_engine=SequentialEngineConfig(max_model_count=3),
                                 model_format=GraphModelFormatConfig(dummy_input=[1, 4]))
    canonical = config.canonical()
    assert canonical.max_trial_number == 3 and canonical.dummy_input == [1, 4]
    cgo = NasExperimentConfig(CgoEngineConfig(max_concurrency_cgo=3, batch_waiting_time=5), "graph").canonical()
    assert (cgo.max_concurrency_cgo, cgo.batch_waiting_time) == (3, 5)
    assert NasExperimentConfig(max_trial_duration="1h").trial_timeout == "1h"


def test_nni_only_config_fields_say_what_to_use() -> None:
    with pytest.raises(ConfigError, match="tuner.*mutable arguments"):
        NasExperimentConfig(tuner={"name": "TPE"})
    config = NasExperimentConfig()
    with pytest.raises(ConfigError, match="nni_manager_ip.*no NNI manager"):
        config.nni_manager_ip = "127.0.0.1"


def test_inferred_config_is_editable_before_run() -> None:
    exp = NasExperiment(MyModelSpace(), FunctionalEvaluator(foo, a=1), Random())
    exp.config.max_trial_number = 3
    exp.config.execution_engine = "sequential"  # the inferred training service then goes away
    canonical = exp.config.canonical(exp.strategy)
    assert canonical.max_trial_number == 3 and canonical.training_service is None
    assert canonical.model_format == "simplified"


def test_strategy_arguments_as_nni_documents_them() -> None:
    GridSearch(shuffle=False, dedup=True, seed=1)
    RegularizedEvolution(population_size=10, sample_size=3, mutation_prob=0.1, crossover=True, dedup=False, seed=0)
    with pytest.deprecated_call():
        Random(dedup=True, seed=0, variational=True)


def test_trace_and_framework_helpers() -> None:
    assert is_traceable(MyModelSpace()) and nni.is_traceable(MyModelSpace())
    assert nni.trace(foo) is foo and nni.trace(kw_only=False)(foo) is foo
    assert nni.get_default_framework() == "pytorch"
    nni.set_default_framework("pytorch")
    with pytest.raises(ValueError, match="PyTorch only"):
        nni.set_default_framework("tensorflow")
    with pytest.raises(NotImplementedError, match="nni.dump.*torch.save"):
        nni.dump(Metrics())
