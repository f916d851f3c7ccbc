"""``OneShotModule``: the evaluator's Lightning module, wrapped to train a supernet.

The evaluator's module (its loss, metrics, optimizer, schedulers: the *training recipe*) stays in
charge of every step; this wrapper decides which architecture the supernet computes before each
step, runs the algorithm's own updates (architecture logits, controller), validates the current
best architecture every epoch, checkpoints, and reports the epoch to the experiment.

A subclass per algorithm defines ``training_step`` and, where it differs from the default, which
architecture validation uses and what the search exports at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning
import torch
from torch import Tensor, nn

from nasflow.mutable import Sample

from .architecture import Architecture
from .mixed_op import MixedOperation

__all__ = ["OneShotModule", "SearchResult", "recalibrated_batchnorm"]

_logger = logging.getLogger(__name__)

_DELEGATED_HOOKS = (
    "on_fit_start", "on_fit_end", "on_train_start", "on_train_epoch_start", "on_validation_start",
    "on_validation_end",
)

Reporter = Callable[[int, dict[str, Any], Sample | None], None]


@dataclass
class SearchResult:
    """What a finished search exports: an architecture and its validation metrics (with inherited weights)."""

    sample: Sample
    metrics: dict[str, Any]


def _delegate(name: str) -> Callable[..., Any]:
    def hook(self: OneShotModule, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.training_module, name)(*args, **kwargs)

    hook.__name__ = name
    hook.__doc__ = f"Runs the evaluator module's ``{name}``."
    return hook


def _batchnorms(supernet: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """Holders of running statistics (BatchNorm layers, mixed BatchNorm operations) and the modules whose
    ``momentum`` governs their update (the layers, and the mixed operations' templates in use)."""
    holders: list[nn.Module] = []
    updaters: list[nn.Module] = []
    for module in supernet.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            holders.append(module)
            updaters.append(module)
        elif isinstance(module, MixedOperation) and hasattr(module, "running_mean"):
            holders.append(module)
            updaters.append(module._template(module._combo_now()))
    return holders, updaters


@contextlib.contextmanager
def recalibrated_batchnorm(supernet: nn.Module, batches: Iterable[Any], forward: Callable[[Any], Any],
                           keep: bool = False) -> Iterator[None]:
    """BatchNorm statistics recomputed for the architecture in force (SPOS): reset, then averaged over
    ``batches`` (train mode, no gradients); the supernet's own are restored on exit unless ``keep``."""
    holders, updaters = _batchnorms(supernet)
    saved = [{name: b.clone() for name, b in m.named_buffers(recurse=False)} for m in holders]
    momenta = [m.momentum for m in updaters]
    was_training = supernet.training
    try:
        for holder in holders:
            holder.running_mean.zero_()
            holder.running_var.fill_(1.0)
            holder.num_batches_tracked.zero_()
        for updater in updaters:
            updater.momentum = None  # a cumulative average over the calibration batches
        supernet.train()
        with torch.no_grad():
            for batch in batches:
                forward(batch)
        yield
    finally:
        for updater, momentum in zip(updaters, momenta, strict=True):
            updater.momentum = momentum
        supernet.train(was_training)
        if not keep:
            for holder, buffers in zip(holders, saved, strict=True):
                for name, value in buffers.items():
                    getattr(holder, name).copy_(value)


class OneShotModule(lightning.LightningModule):
    """The base of the strategies' Lightning modules (see the module docstring).

    ``training_module`` is the evaluator's module; its ``model`` is set to ``supernet``.
    ``reporter(epoch, metrics, sample)`` receives each epoch's validation metrics (on rank 0 only).
    """

    recalibrate_batches = 0  # training batches that recompute BatchNorm statistics before scoring (SPOS)

    def __init__(self, training_module: lightning.LightningModule, supernet: nn.Module, arch: Architecture) -> None:
        super().__init__()
        self.training_module = training_module
        training_module.set_model(supernet)  # type: ignore[operator]
        training_module.running_mode = "oneshot"  # the evaluator must not report: this module does
        self.arch = arch
        self.reporter: Reporter | None = None
        self.checkpoint_path: Path | None = None
        self.train_loader: Any = None  # the plain loaders, for this module's own loops (search, recalibration)
        self.val_loader: Any = None
        self.result: SearchResult | None = None
        self.seed: int | None = None
        self.rng = random.Random(0)
        self.generator = torch.Generator()
        self._validation: dict[str, Any] | None = None
        self._validated: Sample | None = None

    @property
    def supernet(self) -> nn.Module:
        return self.training_module.model  # type: ignore[return-value]

    # ---- wiring to the evaluator's module --------------------------------------------------------
    def setup(self, stage: str) -> None:
        # Logging goes through this module, which the trainer drives (the inner one is never attached).
        self.training_module.log = self.log  # type: ignore[method-assign]
        self.training_module.setup(stage)
        self._synchronize_seed()

    def teardown(self, stage: str) -> None:
        self.training_module.__dict__.pop("log", None)
        self.training_module.teardown(stage)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.training_module(*args, **kwargs)

    def _synchronize_seed(self) -> None:
        """One seed for every rank (rank 0's), so all ranks draw the same architectures."""
        if self.seed is None:
            self.seed = int(torch.randint(0, 2**62, (1,)).item())
        self.seed = int(self.trainer.strategy.broadcast(self.seed, src=0))
        if not getattr(self, "_rng_restored", False):
            self.rng.seed(self.seed)
            self.generator.manual_seed(self.seed)

    def broadcast(self, sample: Sample) -> Sample:
        """Rank 0's sample on every rank (under DDP each rank would otherwise train its own path)."""
        return self.trainer.strategy.broadcast(sample, src=0)

    # ---- optimizers --------------------------------------------------------------------------------
    def architecture_optimizers(self) -> list[torch.optim.Optimizer]:
        """The algorithm's own optimizers (architecture logits, controller); none by default."""
        return []

    def configure_optimizers(self) -> Any:
        own = self.architecture_optimizers()
        config = self.training_module.configure_optimizers()
        if not own:
            return config
        optimizers, schedulers = normalize_optimizers(config)
        if len(optimizers) != 1:
            raise ValueError(f"{type(self).__name__} needs the evaluator's module to configure exactly one optimizer "
                             f"(the weights'), got {len(optimizers)}.")
        return optimizers + own, schedulers

    def weight_optimizer(self) -> Any:
        optimizers = self.optimizers()
        return optimizers[0] if isinstance(optimizers, list) else optimizers

    def own_optimizers(self) -> list[Any]:
        optimizers = self.optimizers()
        return list(optimizers[1:]) if isinstance(optimizers, list) else []

    def weight_step(self, loss: Tensor, batch_idx: int, gradient_clip_val: float | None = None) -> None:
        """One step of the evaluator's optimizer on ``loss`` (manual optimization, the evaluator's hooks)."""
        optimizer = self.weight_optimizer()
        self.training_module.optimizer_zero_grad(self.current_epoch, batch_idx, optimizer)
        self.manual_backward(loss)
        if gradient_clip_val is not None:
            self.clip_gradients(optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm="norm")
        self.training_module.optimizer_step(self.current_epoch, batch_idx, optimizer)
        self._step_schedulers("step", batch_idx)

    def _step_schedulers(self, interval: str, index: int) -> None:
        if self.automatic_optimization:
            return
        for config in self.trainer.lr_scheduler_configs:
            if config.interval != interval or (index + 1) % config.frequency:
                continue
            if config.reduce_on_plateau:
                value = self.trainer.callback_metrics.get(config.monitor or "")
                if value is None:
                    _logger.warning("ReduceLROnPlateau monitors %r, which was not logged; it is not stepped.",
                                    config.monitor)
                    continue
                config.scheduler.step(value)  # type: ignore[call-arg]
            else:
                config.scheduler.step()  # type: ignore[call-arg]

    @staticmethod
    def step_loss(output: Any) -> Tensor:
        """The loss of a ``training_step`` output (a tensor, or a dict with ``'loss'``)."""
        loss = output["loss"] if isinstance(output, dict) else output
        if not isinstance(loss, Tensor):
            raise TypeError(f"The evaluator's training_step returned {output!r}; one-shot strategies need the loss.")
        return loss

    # ---- validation: the current best architecture -------------------------------------------------
    def validation_sample(self) -> Sample | None:
        """The architecture validated each epoch (the current export); None draws one per batch."""
        return self.current_export()

    def current_export(self) -> Sample:
        """What the search would export now."""
        raise NotImplementedError

    def on_validation_epoch_start(self) -> None:
        self._validated = self.validation_sample()
        self.arch.use(self._validated)
        self.training_module.on_validation_epoch_start()

    def validation_step(self, batch: Any, batch_idx: int, *args: Any) -> Any:
        if self._validated is None:
            self.arch.use(self.broadcast(self.arch.uniform(self.rng)))
        return self.training_module.validation_step(batch, batch_idx, *args)

    def on_validation_epoch_end(self) -> None:
        self.training_module.on_validation_epoch_end()
        if not self.trainer.sanity_checking:
            self._validation = metrics_of(self.training_module, dict(self.trainer.callback_metrics))

    def on_train_epoch_end(self) -> None:
        self.training_module.on_train_epoch_end()
        self._step_schedulers("epoch", self.current_epoch)
        self.save()
        if self._validation is not None and self.trainer.is_global_zero and self.reporter is not None:
            self.reporter(self.current_epoch, self._validation, self._validated)
        self._validation = None

    def save(self) -> None:
        """Checkpoint (supernet, architecture, optimizers, loops, random state) where resume looks for it.

        Every rank takes part (saving is collective under DDP; rank 0 writes), whichever knows the path.
        """
        path = self.trainer.strategy.broadcast(self.checkpoint_path, src=0)
        if path is None:
            return
        partial = path.with_name(path.name + ".partial")
        self.trainer.save_checkpoint(partial, weights_only=False)
        if self.trainer.is_global_zero:
            os.chmod(partial, 0o600)
            os.replace(partial, path)  # a kill mid-write leaves the previous checkpoint whole

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["nasflow_oneshot"] = {"labels": [str(label) for label in self.arch.mutables], "seed": self.seed,
                                         "rng": self.rng.getstate(), "generator": self.generator.get_state(),
                                         **self.extra_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("nasflow_oneshot")
        if state is None:
            raise ValueError("This checkpoint was not written by a nasflow one-shot strategy.")
        if state["labels"] != [str(label) for label in self.arch.mutables]:
            raise ValueError(f"The checkpoint belongs to a space with labels {state['labels']}, not "
                             f"{list(self.arch.mutables)}; resume with the space it was trained on.")
        self.seed = state["seed"]
        self.rng.setstate(state["rng"])
        self.generator.set_state(state["generator"])
        self._rng_restored = True
        self.load_extra_state(state)

    def extra_state(self) -> dict[str, Any]:
        """Algorithm state outside parameters and optimizers (e.g. ENAS's reward baseline)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        return None

    # ---- the end of the search ---------------------------------------------------------------------
    def on_train_end(self) -> None:
        self.training_module.on_train_end()
        self.finish()

    def finish(self) -> SearchResult:
        """Decide the exported architecture and score it on the validation data (once)."""
        if self.result is None:
            sample = self.final_export()
            self.result = SearchResult(sample, self.score(sample, self.recalibrate_batches, keep_statistics=True))
            self.arch.use(sample)
        return self.result

    def final_export(self) -> Sample:
        return self.current_export()

    def score(self, sample: Sample, recalibrate_batches: int = 0, keep_statistics: bool = False) -> dict[str, Any]:
        """Validation metrics of ``sample`` with the supernet's weights (after recomputing BatchNorm
        statistics on ``recalibrate_batches`` training batches, when asked)."""
        self.arch.use(sample)
        calibration = contextlib.nullcontext()
        if recalibrate_batches:
            batches = _take(self.train_loader, recalibrate_batches)
            calibration = recalibrated_batchnorm(self.supernet, batches, self._forward_batch, keep=keep_statistics)
        with calibration:
            return self.validate_here(self.val_loader)

    def _forward_batch(self, batch: Any) -> Any:
        batch = self._device_batch(batch)
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.supernet(inputs)

    def _device_batch(self, batch: Any) -> Any:
        device = next(iter(self.parameters()), torch.empty(0)).device
        return lightning.pytorch.utilities.move_data_to_device(batch, device)

    def validate_here(self, loader: Iterable[Any], limit: int | None = None) -> dict[str, Any]:
        """Run the evaluator module's validation over ``loader`` outside the trainer; its metrics."""
        module = self.training_module
        was_training = module.training
        module.eval()
        with capture_logs(module) as logged, torch.no_grad():
            module.on_validation_epoch_start()
            for index, batch in enumerate(loader):
                if limit is not None and index >= limit:
                    break
                module.validation_step(self._device_batch(batch), index)
            module.on_validation_epoch_end()
        module.train(was_training)
        return metrics_of(module, logged.mean())


def _take(loader: Iterable[Any], count: int) -> list[Any]:
    batches = []
    while len(batches) < count:
        before = len(batches)
        for batch in loader:
            batches.append(batch)
            if len(batches) == count:
                break
        if len(batches) == before:
            raise ValueError("The training data loader is empty; BatchNorm statistics cannot be recomputed.")
    return batches


for _name in _DELEGATED_HOOKS:
    setattr(OneShotModule, _name, _delegate(_name))


class _Logged:
    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def add(self, name: str, value: Any) -> None:
        if isinstance(value, Tensor) and value.numel() == 1 or isinstance(value, (int, float)):
            self.values.setdefault(name, []).append(float(value))

    def mean(self) -> dict[str, float]:
        return {name: sum(v) / len(v) for name, v in self.values.items()}


@contextlib.contextmanager
def capture_logs(module: lightning.LightningModule) -> Iterator[_Logged]:
    """Collect what ``module`` logs (``self.log`` / ``self.log_dict``) instead of sending it to a trainer."""
    logged = _Logged()
    previous = module.__dict__.get("log")

    def log(name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        logged.add(name, value)

    module.log = log  # type: ignore[method-assign]
    try:
        yield logged
    finally:
        if previous is None:
            module.__dict__.pop("log", None)
        else:
            module.log = previous  # type: ignore[method-assign]


def metrics_of(module: lightning.LightningModule, logged: dict[str, Any]) -> dict[str, Any]:
    """The latest validation metrics: the nasflow module's ``validation_metrics()``, or what it logged
    (as NNI modules report), with ``'default'`` the first validation metric."""
    reported = getattr(module, "validation_metrics", lambda: None)()
    if reported is not None:
        return dict(reported) if isinstance(reported, dict) else {"default": float(reported)}
    values = {name: float(v) for name, v in logged.items() if isinstance(v, (int, float, Tensor))}
    if not values:
        raise RuntimeError("The evaluator's module neither returns validation_metrics() nor logs a metric in "
                           "validation; a one-shot strategy needs one to rank architectures.")
    default = next((v for k, v in values.items() if k.startswith("val")), next(iter(values.values())))
    return {"default": values.get("default", default), **values}


def normalize_optimizers(config: Any) -> tuple[list[torch.optim.Optimizer], list[Any]]:
    """Lightning's ``configure_optimizers`` return forms, as ``(optimizers, scheduler configs)``."""
    if config is None:
        return [], []
    if isinstance(config, torch.optim.Optimizer):
        return [config], []
    if isinstance(config, dict):
        scheduler = config.get("lr_scheduler")
        return [config["optimizer"]], [] if scheduler is None else [scheduler]
    if isinstance(config, (list, tuple)):
        if len(config) == 2 and isinstance(config[0], (list, tuple)) and isinstance(config[1], (list, tuple)):
            return list(config[0]), list(config[1])
        optimizers: list[torch.optim.Optimizer] = []
        schedulers: list[Any] = []
        for item in config:
            more, scheduled = normalize_optimizers(item)
            optimizers += more
            schedulers += scheduled
        return optimizers, schedulers
    raise TypeError(f"configure_optimizers returned {config!r}, which is not a form Lightning documents.")
