"""Each one-shot strategy end to end through NasExperiment on digits: search quality, store, export."""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
from oneshot_support import QUIET, MlpSpace, digits, evaluator, retrain
from torch.utils.data import TensorDataset

import nasflow
from nasflow.cli import main as cli
from nasflow.evaluator import (
    Classification,
    DataLoader,
    FunctionalEvaluator,
    Lightning,
    LightningModule,
    Regression,
    Trainer,
)
from nasflow.execution import SequentialExecutionEngine
from nasflow.experiment import NasExperiment, NasExperimentConfig
from nasflow.experiment.config import ConfigError
from nasflow.mutable import MutableDict
from nasflow.space import RawFormatModelSpace
from nasflow.strategy import DARTS, ENAS, GridSearch, GumbelDARTS, Proxyless, RandomOneShot
from nasflow.strategy.oneshot import CostTable, UnsupportedChoiceError
from nasflow.strategy.utils import sample_key

pytestmark = pytest.mark.filterwarnings("ignore:.*does not have many workers", "ignore:.*treespec")

STRATEGIES = {
    "DARTS": lambda: DARTS(),
    "GumbelDARTS": lambda: GumbelDARTS(),
    "Proxyless": lambda: Proxyless(),  # searches layer choices only: the space's width is fixed for it
    "RandomOneShot": lambda: RandomOneShot(),
    "ENAS": lambda: ENAS(batches_per_update=4, ctrl_learning_rate=0.05),  # a controller that learns in 3 epochs
}
EPOCHS = 3


def widths(name: str) -> tuple[int, ...]:
    return (32,) if name == "Proxyless" else (8, 32)


@pytest.fixture(scope="module")
def data() -> tuple[TensorDataset, TensorDataset]:
    return digits()


@pytest.fixture(scope="module")
def searched(data: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, NasExperiment]:
    """Every strategy searched once (seed 0), shared by the tests below."""
    torch.set_num_threads(1)
    directory = tmp_path_factory.mktemp("experiments")
    experiments = {}
    for name, make in STRATEGIES.items():
        torch.manual_seed(0)
        config = NasExperimentConfig(experiment_working_directory=str(directory), progress=False)
        experiment = NasExperiment(MlpSpace(widths(name)), evaluator(data, max_epochs=EPOCHS), make(), config)
        assert experiment.run() is True
        experiments[name] = experiment
    return experiments


@pytest.fixture(scope="module")
def retrained(data: Any) -> Any:
    """Accuracy of an architecture trained from scratch (the same recipe for all), computed once each."""
    cache: dict[str, float] = {}

    def accuracy(space_widths: tuple[int, ...], sample: dict[str, Any]) -> float:
        key = sample_key({"widths": space_widths, **sample})
        if key not in cache:
            cache[key] = retrain(MlpSpace(space_widths).freeze(sample), data)
        return cache[key]

    return accuracy


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_exported_architecture_retrains_above_the_median_of_random_ones(name: str, searched: Any,
                                                                         retrained: Any) -> None:
    space = MlpSpace(widths(name))
    randoms = random.Random(0).sample(list(MutableDict(space.simplify()).grid()), 10)
    median = statistics.median(retrained(widths(name), s) for s in randoms)
    exported = searched[name].export_top_models(1)[0]
    assert space.contains(exported)
    assert retrained(widths(name), exported) > median


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_search_is_recorded_like_any_experiment(name: str, searched: Any, capsys: Any) -> None:
    experiment = searched[name]
    (record,) = experiment._store.models()
    assert record.status == "trained" and record.format == "raw"
    assert [m["epoch"] for m in record.metrics.intermediates] == list(range(EPOCHS))  # one per epoch
    assert all(0 <= m["default"] <= 1 and "val_loss" in m for m in record.metrics.intermediates)
    exported = experiment.export_top_models(1)[0]
    assert record.sample == exported  # the run's record carries the architecture it exports
    assert record.metrics.final["default"] == record.metrics.final["val_acc"]
    strategy = experiment.strategy
    assert strategy.export() == exported
    (model,) = strategy.list_models()
    assert model.sample == exported and model.metric == record.metrics.final["default"]
    assert cli(["show", experiment.id, "--dir", str(Path(experiment._store.path).parent.parent)]) == 0
    assert str(exported[next(iter(exported))]) in capsys.readouterr().out


@pytest.mark.parametrize("name", ["DARTS", "RandomOneShot"])
def test_exported_instance_inherits_the_scored_weights(name: str, searched: Any, data: Any) -> None:
    experiment = searched[name]
    (instance,) = experiment.export_top_models(1, formatter="instance")
    assert not any(isinstance(m, nasflow.nn.MutableModule) and m.simplify() for m in instance.modules())
    x, y = data[1].tensors
    instance.eval()
    with torch.no_grad():
        accuracy = (instance(x).argmax(1) == y).float().mean().item()
    final = experiment._store.models()[0].metrics.final
    assert accuracy == pytest.approx(final["val_acc"], abs=1e-6)  # the weights that were scored
    viewed = NasExperiment.view(experiment.id, experiment_working_directory=str(experiment._store.path.parent.parent),
                                trusted=True)
    (again,) = viewed.export_top_models(1, formatter="instance")  # another experiment object: from the files
    again.eval()
    with torch.no_grad():
        assert torch.equal(again(x), instance(x))


def test_one_shot_config_is_inferred_and_checked() -> None:
    config = NasExperimentConfig().canonical(DARTS())
    assert (config.execution_engine, config.model_format, config.training_service) == ("sequential", "raw", None)
    with pytest.raises(ConfigError, match="execution_engine.*one-shot.*'sequential', 'raw'"):
        NasExperimentConfig("ts", "simplified").canonical(ENAS())
    with pytest.raises(ConfigError, match="model_format.*raw"):
        NasExperimentConfig("sequential", "simplified").canonical(RandomOneShot())
    with pytest.raises(ConfigError, match="training_service"):
        NasExperimentConfig(training_service="local").canonical(Proxyless())


def _initialize(strategy: Any, evaluator: Any) -> None:
    strategy.initialize(RawFormatModelSpace(MlpSpace(), evaluator), SequentialExecutionEngine())


def test_evaluators_a_one_shot_strategy_cannot_use_are_refused(data: Any) -> None:
    with pytest.raises(TypeError, match="Lightning evaluator"):
        _initialize(DARTS(), FunctionalEvaluator(lambda model: None))
    with pytest.raises(UnsupportedChoiceError, match="'lr'"):
        _initialize(DARTS(), evaluator(data, learning_rate=nasflow.choice("lr", [0.1, 0.01])))
    with pytest.raises(ValueError, match="gradient_clip_val.*DARTS"):
        _initialize(DARTS(), evaluator(data, gradient_clip_val=1.0))
    with pytest.raises(ValueError, match="ddp_find_unused_parameters_true"):
        _initialize(RandomOneShot(), evaluator(data, strategy="ddp"))
    with pytest.raises(TypeError, match="policy_fn.*tianshou"):
        ENAS(policy_fn=lambda env: None)
    with pytest.raises(ValueError, match="both train_dataloaders and val_dataloaders"):
        _initialize(ENAS(), Classification(train_dataloaders=DataLoader(data[0], batch_size=50), **QUIET))


def test_regression_search_minimizes_the_error(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x = torch.randn(400, 64)
    y = x[:, :5].sum(1, keepdim=True).repeat(1, 10)  # a linear target: ReLU / zero paths are worse
    train, val = TensorDataset(x[:300], y[:300]), TensorDataset(x[300:], y[300:])
    regression = Regression(train_dataloaders=DataLoader(train, batch_size=50), learning_rate=1e-2,
                            val_dataloaders=DataLoader(val, batch_size=100), max_epochs=1, logger=False,
                            enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
    strategy = RandomOneShot(search_samples=6, recalibrate_batches=0)
    config = NasExperimentConfig(experiment_working_directory=str(tmp_path), progress=False)
    experiment = NasExperiment(MlpSpace(), regression, strategy, config)
    experiment.run()
    results = strategy.oneshot_module.search_results
    best = min(results, key=lambda r: r[1]["val_mse"])
    assert experiment.export_top_models(1)[0] == best[0]
    assert experiment._store.models()[0].metrics.final["val_mse"] == pytest.approx(best[1]["val_mse"])


class LoggingModule(LightningModule):
    """Written the NNI way: it logs its validation metric instead of returning validation_metrics()."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.cross_entropy(self.model(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_acc", (self.model(x).argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class DigitsData(lightning.LightningDataModule):
    def __init__(self, data: Any) -> None:
        super().__init__()
        self.data = data

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data[0], batch_size=100, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.data[1], batch_size=200)


def test_a_module_that_only_logs_and_a_datamodule(data: Any, tmp_path: Path) -> None:
    torch.manual_seed(0)
    ev = Lightning(LoggingModule(), Trainer(max_epochs=2, **QUIET), datamodule=DigitsData(data))
    config = NasExperimentConfig(experiment_working_directory=str(tmp_path), progress=False)
    experiment = NasExperiment(MlpSpace(), ev, DARTS(), config)
    experiment.run()
    (record,) = experiment._store.models()
    assert record.status == "trained" and [m["epoch"] for m in record.metrics.intermediates] == [0, 1]
    assert record.metrics.final["default"] == record.metrics.final["val_acc"] > 0.1
    assert record.sample == experiment.export_top_models(1)[0]


def test_a_multi_trial_search_on_the_trained_supernet_inherits_its_weights(searched: Any, data: Any,
                                                                          tmp_path: Path) -> None:
    """NNI's documented SPOS workflow: pretrain with RandomOneShot, then search the supernet itself with
    a multi-trial strategy on the sequential engine and the raw format."""
    supernet = searched["RandomOneShot"].model_space
    x, y = data[1].tensors

    def accuracy(model: torch.nn.Module) -> float:
        model.eval()
        with torch.no_grad():
            return (model(x).argmax(1) == y).float().mean().item()

    def score(model: torch.nn.Module) -> None:
        nasflow.report_final_result(accuracy(model))

    config = NasExperimentConfig("sequential", "raw", max_trial_number=4, experiment_working_directory=str(tmp_path),
                                 progress=False)
    experiment = NasExperiment(supernet, FunctionalEvaluator(score), GridSearch(), config)
    experiment.run()
    models = experiment.list_models()
    assert len(models) == 4
    for model in models:
        assert model.metric == accuracy(supernet.freeze(model.sample))


@pytest.mark.parametrize("expensive", ["relu", "sigmoid"])
def test_proxyless_latency_penalty_steers_the_search(expensive: str, data: Any, tmp_path: Path) -> None:
    """A measured per-op latency table: the expected latency under the softmax, through the binary gates'
    logits, pushes the export away from whichever activation is slow."""
    latency = CostTable({"act": {"relu": 1.0, "sigmoid": 1.0, "zero": 1.0, expensive: 20.0}})
    strategy = Proxyless(arc_learning_rate=0.05, penalty={"profiler": latency, "baseline": 1.0, "scale": 1.0})
    config = NasExperimentConfig(experiment_working_directory=str(tmp_path), progress=False)
    torch.manual_seed(0)
    experiment = NasExperiment(MlpSpace((32,)), evaluator((data[0], data[1]), max_epochs=1), strategy, config)
    experiment.run()
    assert experiment.export_top_models(1)[0]["act"] != expensive
    probs = torch.softmax(strategy.oneshot_module.arch.logits["act"].detach(), -1)
    assert probs[list(strategy.supernet_arch.mutables["act"].values).index(expensive)] < 0.2


def test_nni_enas_space_with_loose_ends_searches(tmp_path: Path, caplog: Any) -> None:
    """The hub's ENAS space: cells with loose ends whose next cells are built for every node, and
    reduction operations that depend on the chosen input (operations on edges)."""
    from nasflow.hub import ENAS as EnasSpace

    torch.manual_seed(0)
    images = TensorDataset(torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,)))
    ev = Classification(train_dataloaders=DataLoader(images, batch_size=8), val_dataloaders=DataLoader(images,
                        batch_size=16), max_epochs=1, limit_train_batches=1, **QUIET)
    space = EnasSpace(width=4, num_cells=3, dataset="cifar")
    config = NasExperimentConfig(experiment_working_directory=str(tmp_path), progress=False)
    experiment = NasExperiment(space, ev, ENAS(), config)
    experiment.run()
    (record,) = experiment._store.models()
    assert record.status == "trained" and space.contains(record.sample)
    assert "fresh weights" in caplog.text  # this space rebuilds its models: nothing is claimed inherited
