"""Supervised evaluators: ``SupervisedLearningModule``, ``Classification`` and ``Regression`` (NNI 3.0).

The reported metric is a dict: ``{'default': <first metric>, 'val_<metric>': ..., 'val_loss': ...}``
(validation accuracy for classification, MSE for regression), after every validation run and, at
the end, the last one as the final result.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nasflow.runtime import MetricValue

from .lightning import Lightning, LightningModule, Trainer, ValidationReporter
from .metrics import EpochMetrics, accuracy, mean_squared_error

__all__ = [
    "SupervisedLearningModule", "ClassificationModule", "RegressionModule", "Classification", "Regression",
    "build_criterion", "build_optimizer", "reads_training_metrics",
]

OptimizerFactory = type[torch.optim.Optimizer] | Callable[..., torch.optim.Optimizer]


def build_criterion(criterion: Any) -> Callable[[Tensor, Tensor], Tensor]:
    """A loss class is instantiated (NNI passes classes); an instance or function is used as is."""
    return criterion() if isinstance(criterion, type) else criterion


def build_optimizer(optimizer: OptimizerFactory, parameters: Any, learning_rate: float, weight_decay: float,
                    **kwargs: Any) -> torch.optim.Optimizer:
    return optimizer(parameters, lr=learning_rate, weight_decay=weight_decay, **kwargs)


def metric_value(values: Mapping[str, float], metric_names: list[str], prefix: str = "val_") -> MetricValue:
    """``{'default': first metric (the loss if none), '<prefix><name>': ...}`` for a report."""
    default = values[metric_names[0]] if metric_names else values["loss"]
    return {"default": default, **{prefix + name: value for name, value in values.items()}}


def reads_training_metrics(trainer: Any) -> bool:
    """Whether anything reads per-step training metrics: a logger, a progress bar, or a callback
    that may look at them (checkpoints without a monitor and model summaries do not)."""
    from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary, ProgressBar

    if trainer.loggers or trainer.progress_bar_callback is not None:
        return True
    for callback in trainer.callbacks:
        if isinstance(callback, (ModelSummary, ProgressBar, ValidationReporter)):
            continue
        if isinstance(callback, ModelCheckpoint) and callback.monitor is None:
            continue
        return True
    return False


class SupervisedLearningModule(LightningModule):
    """Trains ``model`` on ``(x, y)`` batches with ``criterion`` and one optimizer.

    ``metrics`` maps names to metric functions ``(preds, target) -> batch mean`` or stateful
    metric objects (see ``nasflow.evaluator.metrics``); the first is the reported default.
    Training loss and metrics are logged every step (``train_loss``, ``train_<metric>``) when a
    logger, progress bar or monitoring callback reads them (see :func:`reads_training_metrics`).
    ``lr_scheduler`` (optional) builds a scheduler from the optimizer, stepped every epoch, or a
    Lightning scheduler config dict (``{"scheduler": ..., "interval": "step"}``).
    ``export_onnx`` (True or a path) exports the model once, at the first validation; a relative
    path is taken in the trainer's ``default_root_dir`` (a trial's own folder, see ``Lightning``).

    This module is the one training step of nasflow: a merged CGO trial runs one copy of it per
    model (see ``MultiModelLightningModule``), so merged and solo training are the same code.
    """

    def __init__(self, criterion: Any, metrics: Mapping[str, Any] | None = None, learning_rate: float = 1e-3,
                 weight_decay: float = 0.0, optimizer: OptimizerFactory = torch.optim.Adam,
                 export_onnx: bool | str | Path | None = False,
                 lr_scheduler: Callable[[torch.optim.Optimizer], Any] | None = None) -> None:
        super().__init__()
        hparams = {"criterion": criterion, "optimizer": optimizer, "learning_rate": learning_rate,
                   "weight_decay": weight_decay}
        # ignore: Lightning compares __init__'s arguments with ``hparams`` using ``==``, and on a mutable
        # (a searched learning rate) ``==`` builds an expression rather than answering
        self.save_hyperparameters(hparams, ignore=list(hparams))
        self.criterion_factory = criterion
        self.criterion = build_criterion(criterion)
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.lr_scheduler = lr_scheduler
        self.metric_specs = dict(metrics or {})
        self.metric_names = list(self.metric_specs)
        self._val = EpochMetrics(self.metric_specs)
        self._test = EpochMetrics(self.metric_specs)
        self._train_metrics = EpochMetrics(self.metric_specs)
        self._last_validation: dict[str, float] | None = None
        self._log_training = True
        self.export_onnx = Path("model.onnx") if export_onnx is True else Path(export_onnx) if export_onnx else None

    def forward(self, x: Any) -> Any:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        y_hat = self(x)
        loss = self.criterion(y_hat, y)
        if self._log_training:
            self.log("train_loss", loss, prog_bar=True)
            for name, value in self._train_metrics.batch_values(y_hat, y).items():
                self.log("train_" + name, value)
        return loss

    def on_fit_start(self) -> None:
        self._last_validation = None  # a metric of the previous model must never be reported for this one
        # Per-step training metrics cost more than a small model's step (Lightning's log): they are
        # computed only when something reads them. The decision depends on the trainer alone, so a
        # model decides the same way trained alone and merged.
        self._log_training = reads_training_metrics(self.trainer)

    def on_validation_epoch_start(self) -> None:
        self._val.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        y_hat = self(x)
        if self.export_onnx is not None and self.running_mode == "multi":
            self._export(x)
        self._val.update(self.criterion(y_hat, y), y_hat, y)

    def on_validation_epoch_end(self) -> None:
        values = self._val.compute()
        if values:
            self._last_validation = values
            self.log_dict({"val_" + name: value for name, value in values.items()}, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self._test.reset()

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        y_hat = self(x)
        self._test.update(self.criterion(y_hat, y), y_hat, y)

    def on_test_epoch_end(self) -> None:
        values = self._test.compute()
        if values:
            self.log_dict({"test_" + name: value for name, value in values.items()})

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.optimizer, self.parameters(), self.learning_rate, self.weight_decay)
        if self.lr_scheduler is None:
            return optimizer
        scheduler = self.lr_scheduler(optimizer)
        config = scheduler if isinstance(scheduler, dict) else {"scheduler": scheduler, "interval": "epoch"}
        return {"optimizer": optimizer, "lr_scheduler": config}

    def validation_metrics(self) -> MetricValue | None:
        if self._last_validation is None:
            return None
        return metric_value(self._last_validation, self.metric_names)

    def requires_validation(self) -> bool:
        return True

    def _export(self, x: Any) -> None:
        path, self.export_onnx = self.export_onnx, None  # once, even if it fails
        assert path is not None
        path = Path(self.trainer.default_root_dir) / path  # an absolute path stays as it is
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.to_onnx(path, x, export_params=True)
        except Exception as err:  # an export failure must not fail the trial
            warnings.warn(f"ONNX export to {path} failed ({err!r}); training goes on without it.", stacklevel=2)


class ClassificationModule(SupervisedLearningModule):
    """Cross-entropy training with accuracy (``val_acc``) as the metric."""

    def __init__(self, criterion: Any = nn.CrossEntropyLoss, learning_rate: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: OptimizerFactory = torch.optim.Adam, export_onnx: bool | str | Path | None = False,
                 num_classes: int | None = None) -> None:
        acc = accuracy if num_classes is None else functools.partial(accuracy, num_classes=num_classes)
        super().__init__(criterion, {"acc": acc}, learning_rate=learning_rate, weight_decay=weight_decay,
                         optimizer=optimizer, export_onnx=export_onnx)
        self.num_classes = num_classes


class RegressionModule(SupervisedLearningModule):
    """MSE training with the mean squared error (``val_mse``) as the metric (lower is better)."""

    metric_direction = "minimize"

    def __init__(self, criterion: Any = nn.MSELoss, learning_rate: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: OptimizerFactory = torch.optim.Adam,
                 export_onnx: bool | str | Path | None = False) -> None:
        super().__init__(criterion, {"mse": mean_squared_error}, learning_rate=learning_rate,
                         weight_decay=weight_decay, optimizer=optimizer, export_onnx=export_onnx)


def _pick_train(train_dataloaders: Any, train_dataloader: Any) -> Any:
    if train_dataloader is not None:
        warnings.warn("train_dataloader is deprecated (as in NNI); pass train_dataloaders.", DeprecationWarning,
                      stacklevel=3)
        if train_dataloaders is None:
            return train_dataloader
    return train_dataloaders


class Classification(Lightning):
    """Train with cross entropy and report validation accuracy (NNI's ``Classification``).

    Extra keyword arguments go to :class:`Trainer` (``max_epochs``, ``logger``, ...).
    """

    def __init__(self, criterion: Any = nn.CrossEntropyLoss, learning_rate: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: OptimizerFactory = torch.optim.Adam, train_dataloaders: Any = None,
                 val_dataloaders: Any = None, export_onnx: bool | str | Path | None = False,
                 train_dataloader: Any = None, datamodule: Any = None, num_classes: int | None = None,
                 **trainer_kwargs: Any) -> None:
        module = ClassificationModule(criterion=criterion, learning_rate=learning_rate, weight_decay=weight_decay,
                                      optimizer=optimizer, export_onnx=export_onnx, num_classes=num_classes)
        super().__init__(module, Trainer(**trainer_kwargs), _pick_train(train_dataloaders, train_dataloader),
                         val_dataloaders, datamodule=datamodule)


class Regression(Lightning):
    """Train with MSE and report the validation mean squared error (NNI's ``Regression``)."""

    def __init__(self, criterion: Any = nn.MSELoss, learning_rate: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: OptimizerFactory = torch.optim.Adam, train_dataloaders: Any = None,
                 val_dataloaders: Any = None, export_onnx: bool | str | Path | None = False,
                 train_dataloader: Any = None, datamodule: Any = None, **trainer_kwargs: Any) -> None:
        module = RegressionModule(criterion=criterion, learning_rate=learning_rate, weight_decay=weight_decay,
                                  optimizer=optimizer, export_onnx=export_onnx)
        super().__init__(module, Trainer(**trainer_kwargs), _pick_train(train_dataloaders, train_dataloader),
                         val_dataloaders, datamodule=datamodule)
