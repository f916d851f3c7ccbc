"""Lightning, Classification and Regression: reporting, comparison, engines and pickling."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import cloudpickle
import lightning
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import nasflow
from nasflow.evaluator import (
    Classification,
    DataLoader,
    Lightning,
    LightningModule,
    Regression,
    Trainer,
    evaluate_model,
)
from nasflow.execution import SequentialExecutionEngine
from nasflow.runtime import trial_context
from nasflow.space import ModelStatus, RawFormatModelSpace

pytestmark = pytest.mark.filterwarnings("ignore:.*does not have many workers", "ignore:.*treespec",
                                        "ignore:.*smaller than the logging interval")

QUIET: dict[str, Any] = {
    "logger": False, "enable_progress_bar": False, "enable_checkpointing": False, "enable_model_summary": False,
}


def mlp(hidden: int = 32, out: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64 if out == 10 else 8, hidden), nn.ReLU(), nn.Linear(hidden, out))


def classification(digits: tuple[TensorDataset, TensorDataset], **kwargs: Any) -> Classification:
    train, val = digits
    options = {"learning_rate": 1e-2, "max_epochs": 4, **QUIET, **kwargs}
    return Classification(train_dataloaders=DataLoader(train, batch_size=64, shuffle=True),
                          val_dataloaders=DataLoader(val, batch_size=128), **options)


def test_classification_learns_digits_and_reports_every_epoch(digits: Any) -> None:
    metrics = evaluate_model(mlp(), classification(digits))
    assert len(metrics.intermediates) == 4  # one per validation epoch, sanity check excluded
    final = metrics.final
    assert isinstance(final, dict) and final == metrics.intermediates[-1]
    assert final["default"] == final["val_acc"] > 0.9 and final["val_loss"] < 0.5
    assert metrics.intermediates[0]["default"] < final["default"]


def test_regression_reports_exact_epoch_mse() -> None:
    torch.manual_seed(1)
    x = torch.randn(300, 8)
    y = x @ torch.randn(8, 1) + 0.05 * torch.randn(300, 1)
    train, val = TensorDataset(x[:200], y[:200]), TensorDataset(x[200:], y[200:])
    evaluator = Regression(learning_rate=1e-2, train_dataloaders=DataLoader(train, batch_size=32),
                           val_dataloaders=DataLoader(val, batch_size=32), max_epochs=3, **QUIET)  # last batch: 4
    model = mlp(16, 1)
    metrics = evaluate_model(model, evaluator)
    assert len(metrics.intermediates) == 3
    assert metrics.final["default"] == metrics.final["val_mse"]
    assert metrics.final["val_mse"] < metrics.intermediates[0]["val_mse"]
    with torch.no_grad():
        expected = nn.functional.mse_loss(model(x[200:]), y[200:]).item()
    assert metrics.final["val_mse"] == pytest.approx(expected, rel=1e-5)  # weighted by batch size


def test_evaluators_compare_by_data_and_trainer_settings(digits: Any) -> None:
    train, val = digits
    loaders = {"train_dataloaders": DataLoader(train, batch_size=64), "val_dataloaders": DataLoader(val, batch_size=64)}
    again = {"train_dataloaders": DataLoader(train, batch_size=64), "val_dataloaders": DataLoader(val, batch_size=64)}
    a = Classification(learning_rate=0.1, max_epochs=2, **loaders, **QUIET)
    b = Classification(learning_rate=0.1, max_epochs=2, **again, **QUIET)
    assert a.shares_data_with(b) and a == b and a.data_signature() == b.data_signature()
    other_lr = Classification(learning_rate=0.01, optimizer=torch.optim.SGD, max_epochs=2, **again, **QUIET)
    assert a.shares_data_with(other_lr) and a != other_lr  # the module differs, the data does not
    assert not a.shares_data_with(Classification(learning_rate=0.1, max_epochs=3, **again, **QUIET))
    copy_of_train = TensorDataset(*train.tensors)
    assert not a.shares_data_with(Classification(learning_rate=0.1, max_epochs=2, **QUIET,
                                                 train_dataloaders=DataLoader(copy_of_train, batch_size=64),
                                                 val_dataloaders=again["val_dataloaders"]))
    assert not a.shares_data_with(Classification(learning_rate=0.1, max_epochs=2, **QUIET,
                                                 train_dataloaders=DataLoader(train, batch_size=32),
                                                 val_dataloaders=again["val_dataloaders"]))
    assert a.shares_data_with(Regression(max_epochs=2, **again, **QUIET))  # another task on the same data: mergeable
    assert not a.shares_data_with(object())


def test_searched_learning_rate_freezes_and_runs_on_the_sequential_engine(digits: Any) -> None:
    evaluator = classification(digits, learning_rate=nasflow.choice("lr", [1e-2, 3e-2]), max_epochs=2)
    space = RawFormatModelSpace.from_model(mlp(), evaluator)
    assert set(space.simplify()) == {"lr"}
    model = space.freeze({"lr": 3e-2})
    assert model.evaluator.module.learning_rate == 3e-2 and model.evaluator.shares_data_with(evaluator)
    engine = SequentialExecutionEngine()
    engine.submit_models(model)
    assert model.status == ModelStatus.Trained
    assert len(model.metrics.intermediates) == 2 and model.metric > 0.8


def test_one_evaluator_evaluates_several_models_on_fresh_trainers(digits: Any) -> None:
    early = lightning.pytorch.callbacks.EarlyStopping("val_acc", mode="max", patience=0)
    evaluator = classification(digits, max_epochs=2, callbacks=[early])
    first, second = evaluate_model(mlp(seed=1), evaluator), evaluate_model(mlp(seed=2), evaluator)
    assert len(first.intermediates) >= 1 and len(second.intermediates) >= 1
    assert second.final != first.final
    assert early.wait_count == 0 and early.best_score is not None and torch.isinf(early.best_score)  # untouched copy
    assert "model" not in evaluator.module._modules  # the evaluator does not keep (or pickle) the last candidate


def test_onnx_export_is_attempted_once_and_never_fails_the_trial(digits: Any, tmp_path: Path) -> None:
    target = tmp_path / "out" / "model.onnx"
    evaluator = classification(digits, max_epochs=1, limit_train_batches=1, export_onnx=target)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluate_model(mlp(), evaluator)
    failed = [w for w in caught if "ONNX export" in str(w.message)]
    assert metrics.final is not None and (target.exists() or len(failed) == 1)


def test_evaluator_survives_cloudpickle_in_another_process(digits: Any, tmp_path: Path) -> None:
    path = tmp_path / "evaluator.pkl"
    path.write_bytes(cloudpickle.dumps(classification(digits, max_epochs=3)))
    script = textwrap.dedent(f"""
        import json, cloudpickle, torch
        from torch import nn
        from nasflow.evaluator import evaluate_model
        torch.set_num_threads(1)
        evaluator = cloudpickle.loads(open({str(path)!r}, "rb").read())
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        metrics = evaluate_model(model, evaluator)
        print(json.dumps({{"final": metrics.final, "count": len(metrics.intermediates)}}))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["count"] == 3 and result["final"]["val_acc"] > 0.9


class SelfReporting(LightningModule):
    """An NNI-style module that reports for itself; the evaluator must not report again."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.model(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.seen.append((self.model(x).argmax(-1) == y).float().mean().item())

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            nasflow.report_intermediate_result(self.seen[-1])

    def on_fit_end(self) -> None:
        nasflow.report_final_result(self.seen[-1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_module_that_reports_itself_is_left_alone(digits: Any) -> None:
    train, val = digits
    evaluator = Lightning(SelfReporting(), Trainer(max_epochs=2, limit_train_batches=3, **QUIET),
                          DataLoader(train, batch_size=64), DataLoader(val, batch_size=400))
    metrics = evaluate_model(mlp(), evaluator)
    assert len(metrics.intermediates) == 2 and isinstance(metrics.final, float)


def test_misuse_is_refused_early(digits: Any) -> None:
    train, _ = digits
    with pytest.raises(TypeError, match="nasflow.evaluator.Trainer"):
        Lightning(SelfReporting(), lightning.Trainer(max_epochs=1, **QUIET))
    with pytest.raises(TypeError, match="LightningModule"):
        Lightning(nn.Linear(1, 1), Trainer(max_epochs=1, **QUIET))  # type: ignore[arg-type]
    no_validation = Classification(train_dataloaders=DataLoader(train, batch_size=64), max_epochs=1, **QUIET)
    with pytest.raises(ValueError, match="val_dataloaders"):
        evaluate_model(mlp(), no_validation)


def loud(digits: tuple[TensorDataset, TensorDataset], **kwargs: Any) -> Classification:
    """Lightning's defaults: a logger, checkpointing, model summary and progress bar."""
    train, val = digits
    return Classification(train_dataloaders=DataLoader(train, batch_size=64),
                          val_dataloaders=DataLoader(val, batch_size=400), max_epochs=1, limit_train_batches=2,
                          **kwargs)


def lightning_chatter(caplog: pytest.LogCaptureFixture) -> str:
    """Lightning's informational messages (banner, tips, summaries) that reached logging."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("lightning") and r.levelno < 30)


def test_in_process_fits_write_nothing_and_keep_lightnings_banner_quiet(
        digits: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)
    evaluator = loud(digits)
    metrics = evaluate_model(mlp(), evaluator)
    assert metrics.final is not None
    assert list(tmp_path.iterdir()) == []  # no lightning_logs/, no checkpoints in the working directory
    assert lightning_chatter(caplog) == ""  # no device banner, no tips
    assert logging.getLogger("lightning.pytorch").level == logging.INFO  # restored after the fit
    asked = loud(digits, default_root_dir=str(tmp_path / "mine"))  # what the user asks for is kept
    evaluate_model(mlp(), asked)
    assert list((tmp_path / "mine").glob("lightning_logs/version_0/checkpoints/*.ckpt"))


def test_a_trials_files_and_messages_go_to_its_folder_and_log(
        digits: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """In a trial with a folder, Lightning's logs and checkpoints land there and its banner goes to
    the trial's output (its log); the progress bar is off, since that output is a file."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    caplog.set_level(logging.INFO)
    evaluator = loud(digits, log_every_n_steps=1)
    assert lightning_chatter(caplog) == ""  # building the evaluator (its recipe trainer) says nothing
    capfd.readouterr()
    with trial_context(lambda kind, value: None, trial_dir=str(tmp_path / "trial-7")) as context:
        evaluator.evaluate(mlp())
    assert context.final_reported
    assert list(work.iterdir()) == []
    assert list((tmp_path / "trial-7").glob("lightning_logs/version_0/checkpoints/*.ckpt"))
    header = (tmp_path / "trial-7" / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "train_loss" in header and "val_acc" in header  # a logger reads per-step training metrics: logged
    assert "GPU available" in lightning_chatter(caplog)  # where a trial's output goes: its log
    assert "Epoch 0" not in "".join(capfd.readouterr())  # no progress bar
