"""The ``Lightning`` evaluator, its ``LightningModule`` base and the traced ``Trainer`` (NNI 3.0 names).

``Lightning(module, trainer, train_dataloaders, val_dataloaders)`` trains a candidate model by
putting it into ``module`` (``module.set_model(model)``) and fitting. Each ``evaluate`` runs on a
fresh trainer rebuilt from the recorded ``Trainer`` arguments, because a Lightning trainer cannot
fit twice and the sequential engine evaluates many models with one evaluator. Metrics are reported
by a callback the evaluator adds: after every validation run (sanity checks excluded) it reports
``module.validation_metrics()`` as an intermediate result, and after fitting the last one as the
final result. A module that reports for itself (as NNI users write them) returns ``None`` there
and is left alone.

Where a trial's files and messages go (Trainer arguments the user passes always win):

- In a trial that has a folder (the training-service engines give each trial
  ``<experiment>/trials/trial-<id>/``, next to its log): ``default_root_dir`` is that folder, so
  ``lightning_logs/`` and checkpoints land there, and the progress bar is off (the trial's output
  is a log file). Lightning's messages (device banner, tips, model summary) go to the trial log.
- In process (``evaluate_model``, the sequential engine) nothing is written unless asked for: no
  logger and no checkpointing unless ``logger``, ``enable_checkpointing`` or ``default_root_dir``
  is given, and no model summary. Lightning's informational messages are silenced while nasflow
  builds and fits trainers (warnings still show); the progress bar keeps Lightning's default.
- The recipe trainer an evaluator is built with never prints Lightning's banner.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import inspect
import logging
import os
import threading
import warnings
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import lightning
from torch import nn

from nasflow.mutable import LabeledMutable, Sample
from nasflow.mutable.base import IsLeaf
from nasflow.runtime import MetricValue, current_trial, report_final_result, report_intermediate_result, trial_budget
from nasflow.space.metrics import MetricDirection

from .base import Evaluator
from .traced import Traced, rebuild_traced, trace_freeze, trace_key, trace_mutables

__all__ = ["LightningModule", "Trainer", "Lightning", "ValidationReporter", "quiet_lightning", "trainer_defaults"]

_logger = logging.getLogger(__name__)


class LightningModule(Traced, lightning.LightningModule):
    """Base of modules used by :class:`Lightning`: the candidate model is set into it.

    ``running_mode`` is ``'multi'`` for multi-trial evaluation (the evaluator reports metrics) and
    ``'oneshot'`` when a one-shot strategy drives the module (nothing is reported).
    """

    running_mode: str = "multi"
    metric_direction: MetricDirection = "maximize"  # 'minimize' when the reported metric is an error
    model: nn.Module

    def set_model(self, model: nn.Module | Callable[[], nn.Module]) -> None:
        """Put the candidate in; a callable is called to build it (NNI accepts both)."""
        self.model = model if isinstance(model, nn.Module) else model()

    def unset_model(self) -> None:
        """Drop the candidate after evaluation, so the evaluator neither pins it nor pickles it."""
        self._modules.pop("model", None)
        self.__dict__.pop("model", None)

    def validation_metrics(self) -> MetricValue | None:
        """The metric of the latest validation run, for the evaluator to report.

        ``None`` (the default) means the module reports through ``nasflow.report_*`` itself.
        """
        return None

    def requires_validation(self) -> bool:
        """Whether fitting without validation is an error (True where ``validation_metrics`` is used)."""
        return False

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        """Lightning's ``log``; inside a merged module (CGO) the name gets the model's prefix
        (``model_2/val_acc``) and the value goes to the merged module, which the trainer drives."""
        host = self.__dict__.get("_nasflow_host")
        if host is None:
            super().log(name, value, *args, **kwargs)
        else:
            host[0].log(host[1] + name, value, *args, **kwargs)


class Trainer(Traced, lightning.Trainer):
    """``lightning.Trainer`` that remembers its arguments (NNI's traced ``Trainer``).

    It pickles as its recipe, and evaluators compare trainers by their arguments. Settings cannot
    be searched: a mutable argument is refused here rather than deep inside Lightning.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for name, value in [*enumerate(args), *kwargs.items()]:
            if any(True for _ in trace_mutables(value)):
                raise TypeError(f"Trainer argument {name!r} is a mutable ({value!r}); trainer settings cannot be "
                                "searched. Search the module's hyperparameters (e.g. learning_rate) instead.")
        if _TRAINER_SPEAKS.get():
            super().__init__(*args, **kwargs)
            return
        # A recipe (or an in-process trainer): Lightning's banner and set-up warnings are noise here;
        # the trainer that fits in a trial repeats them into the trial's log.
        with quiet_lightning(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            super().__init__(*args, **kwargs)

    __init__.__signature__ = inspect.signature(lightning.Trainer.__init__)  # type: ignore[attr-defined]

    def __reduce__(self) -> tuple[Any, ...]:
        return (rebuild_traced, (type(self), self.trace_args, self.trace_kwargs))


# Set while building a trainer that runs in a trial: its banner belongs in the trial log.
_TRAINER_SPEAKS: contextvars.ContextVar[bool] = contextvars.ContextVar("nasflow_trainer_speaks", default=False)
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved: list[tuple[logging.Logger, int]] = []


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hold Lightning's informational messages (banner, tips, summaries) back; warnings still show.

    Only loggers at Lightning's own default level (INFO) are raised to WARNING, so a level the user
    set is kept. Nestable and thread-safe: the first entry raises, the last exit restores.
    """
    global _quiet_depth
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved[:] = [(logger, logger.level) for logger in map(logging.getLogger, _LIGHTNING_LOGGERS)
                               if logger.level == logging.INFO]
            for logger, _ in _quiet_saved:
                logger.setLevel(logging.WARNING)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                for logger, level in _quiet_saved:
                    logger.setLevel(level)
                _quiet_saved.clear()


def trainer_defaults(given: dict[str, Any]) -> dict[str, Any]:
    """Trainer arguments nasflow sets where the user did not: the trial's folder, or no files in process."""
    trial_dir = _trial_folder()
    if trial_dir is not None:
        defaults: dict[str, Any] = {"default_root_dir": trial_dir, "enable_progress_bar": False}
    elif "default_root_dir" in given:  # files were asked for, somewhere
        defaults = {"enable_model_summary": False}
    else:
        defaults = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False}
    return {name: value for name, value in defaults.items() if name not in given}


class ValidationReporter(lightning.Callback):
    """Reports ``validation_metrics()`` after each real validation run and remembers the last one."""

    def __init__(self) -> None:
        self.last: MetricValue | None = None

    def on_validation_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        if trainer.sanity_checking or getattr(pl_module, "running_mode", "multi") != "multi":
            return
        value = pl_module.validation_metrics()
        if value is not None:
            self.last = value
            report_intermediate_result(value)


def _trial_folder() -> str | None:
    """The running trial's folder, created if needed; None in process or where it cannot be created
    (a remote node without the experiment's path): that trial then writes nothing."""
    context = current_trial()
    if context is None or context.trial_dir is None:
        return None
    try:
        os.makedirs(context.trial_dir, mode=0o700, exist_ok=True)
    except OSError as err:
        _logger.warning("Trial folder %s cannot be created (%s); Lightning writes no files for this trial.",
                        context.trial_dir, err)
        context.trial_dir = None
        return None
    return context.trial_dir


def _in_trial_folder() -> bool:
    return _trial_folder() is not None


def _as_list(callbacks: Any) -> list[Any]:
    if callbacks is None:
        return []
    return list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]


class Lightning(Traced, Evaluator):
    """Evaluate a model by fitting ``lightning_module`` with ``trainer`` (NNI's ``Lightning``).

    ``train_dataloaders`` / ``val_dataloaders`` (or ``datamodule``) and ``fit_kwargs`` go to
    ``trainer.fit``. Use :class:`nasflow.evaluator.DataLoader` for loaders, so they travel as recipes
    and compare by arguments. The evaluator is a ``Mutable``: a mutable among its arguments (e.g.
    ``learning_rate=nasflow.choice(...)``) is searched, and ``freeze`` rebuilds it with the value.
    """

    def __init__(self, lightning_module: LightningModule, trainer: Trainer,
                 train_dataloaders: Any = None, val_dataloaders: Any = None,
                 datamodule: lightning.LightningDataModule | None = None,
                 fit_kwargs: dict[str, Any] | None = None) -> None:
        if not isinstance(lightning_module, LightningModule):
            raise TypeError(f"Lightning needs a nasflow.evaluator.LightningModule (which has set_model), got "
                            f"{type(lightning_module).__name__}; subclass nasflow.evaluator.LightningModule.")
        if not isinstance(trainer, Trainer):
            raise TypeError(f"Lightning needs a nasflow.evaluator.Trainer (which records its arguments, so it can be "
                            f"rebuilt for every model and in a worker), got {type(trainer).__name__}.")
        if datamodule is not None and (train_dataloaders is not None or val_dataloaders is not None):
            raise ValueError("Give Lightning either a datamodule or train/val dataloaders, not both.")
        self.module = lightning_module
        self.trainer = trainer
        self.train_dataloaders = train_dataloaders
        self.val_dataloaders = val_dataloaders
        self.datamodule = datamodule
        self.fit_kwargs = dict(fit_kwargs or {})

    @property
    def metric_direction(self) -> MetricDirection:  # type: ignore[override]
        """The module's: Regression's MSE is minimized, a user's module says with its attribute."""
        return self.module.metric_direction

    # ---- Mutable ----------------------------------------------------------------------------
    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterator[LabeledMutable]:
        for mutable in trace_mutables((self.trace_args, self.trace_kwargs)):
            yield from mutable.leaf_mutables(is_leaf)

    def freeze(self, sample: Sample) -> Lightning:
        return trace_freeze(self, sample)

    # ---- comparison -------------------------------------------------------------------------
    def data_signature(self) -> Hashable:
        """What must be equal for two evaluators to train on one data pipeline (CGO's merge condition).

        Loaders, datamodule, fit arguments and trainer settings, keyed by :func:`trace_key`; the
        module (loss, optimizer, learning rate) is left out, since merged models keep their own.
        """
        return (trace_key(self.train_dataloaders), trace_key(self.val_dataloaders), trace_key(self.datamodule),
                trace_key(self.fit_kwargs), trace_key(self.trainer))

    def shares_data_with(self, other: object) -> bool:
        """True when ``other`` is a Lightning evaluator with the same :meth:`data_signature`."""
        return isinstance(other, Lightning) and self.data_signature() == other.data_signature()

    def __eq__(self, other: object) -> bool:
        return other is self or (type(other) is type(self) and trace_key(self) == trace_key(other))

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(module={type(self.module).__name__}, trainer={self.trainer.trace_kwargs})"

    # ---- running ----------------------------------------------------------------------------
    def fresh_trainer(self, *extra_callbacks: lightning.Callback) -> Trainer:
        """A new trainer from the recorded arguments (plus :func:`trainer_defaults`); the user's
        callbacks are deep-copied so their state (best score, patience) does not leak from one model
        to the next. Under a multi-fidelity strategy it trains for ``nasflow.trial_budget()`` epochs."""
        recipe = self.trainer
        kwargs = {**trainer_defaults(recipe.trace_kwargs), **recipe.trace_kwargs}
        token = _TRAINER_SPEAKS.set(_in_trial_folder())
        try:
            trainer = type(recipe)(*recipe.trace_args, **kwargs)
        finally:
            _TRAINER_SPEAKS.reset(token)
        given = _as_list(recipe.trace_kwargs.get("callbacks"))
        trainer.callbacks = [copy.deepcopy(cb) if any(cb is g for g in given) else cb for cb in trainer.callbacks]
        trainer.callbacks.extend(extra_callbacks)
        budget = trial_budget()
        if budget is not None:  # a multi-fidelity strategy's budget is the number of epochs
            trainer.fit_loop.max_epochs = max(int(budget), 1)
        return trainer

    def evaluate(self, model: nn.Module) -> MetricValue | None:
        """Fit ``model`` inside the module; report each validation's metric and the last as final."""
        module = self.module
        if (module.requires_validation() and self.val_dataloaders is None and self.datamodule is None):
            raise ValueError(f"{type(self).__name__} reports validation metrics, so it needs val_dataloaders "
                             "(or a datamodule with a val_dataloader).")
        module.set_model(model)
        reporter = ValidationReporter()
        trainer = self.fresh_trainer(reporter)
        try:
            with contextlib.nullcontext() if _in_trial_folder() else quiet_lightning(), warnings.catch_warnings():
                # Lightning's own use of a torch API that torch deprecated: nothing a user can act on.
                warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
                if self.datamodule is not None:
                    trainer.fit(module, datamodule=self.datamodule, **self.fit_kwargs)
                else:
                    trainer.fit(module, self.train_dataloaders, self.val_dataloaders, **self.fit_kwargs)
        finally:
            module.unset_model()  # the caller holds the trained model; the evaluator stays light
        if trainer.interrupted:
            raise RuntimeError("Training was interrupted before it finished; no final metric is reported.")
        return self._report_final(reporter.last)

    def _report_final(self, last: MetricValue | None) -> MetricValue | None:
        context = current_trial()
        if context is not None and context.final_reported:  # the module reported for itself
            return None
        if self.module.running_mode != "multi":  # a one-shot strategy drives the module; nothing to report
            return None
        if last is None:
            if self.module.requires_validation():
                raise RuntimeError("Fitting ended without a validation run, so there is no metric to report; "
                                   "check limit_val_batches / check_val_every_n_epoch and the val_dataloaders.")
            return None
        report_final_result(last)
        return last

    def fit(self, model: nn.Module) -> MetricValue | None:
        """NNI's older name of :meth:`evaluate`."""
        return self.evaluate(model)
