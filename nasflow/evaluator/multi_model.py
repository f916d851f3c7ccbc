"""Training several models as one merged module (CGO): ``MultiModelLightningModule`` and ``MultiModelTrainer``.

Exactness: merged training gives every model the weights it would get trained alone from the same
initial weights on the same batches. This holds because

- each model has its own criterion, optimizer (class, learning rate, weight decay, kwargs),
  learning-rate scheduler and gradient clipping, applied to its own parameter group only;
- parameter groups must be disjoint and cover every trainable parameter (checked in ``set_model``),
  so gradients cannot mix;
- one backward pass of the summed losses seeds every model's loss with exactly 1.0, as
  ``loss.backward()`` alone does, and the graphs share nothing that requires grad;
- Lightning's manual optimization runs one zero_grad / backward / step per batch through a
  :class:`MultiOptimizer`, so ``global_step`` and ``max_steps`` count batches, as for one model.

Dropout or other randomness consumes the global RNG in a different order when models are merged,
so models using it match only in distribution.

Metric shape: after each validation run the evaluator reports
``{'default': <model 0's default>, 'model_0': <model 0's metric>, 'model_1': ..., ...}`` where each
per-model metric is what that model's evaluator reports alone (``{'default', 'val_acc', 'val_loss'}``
for Classification). :func:`split_multi_model_metric` turns it back into one value per model.

Placement: ``device_map`` (model index -> device) places sub-models of a list-built merged model;
the batch is copied once to each distinct device, and targets follow each output's device.
``MultiModelTrainer`` keeps that placement (its strategy never moves the module).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities import move_data_to_device
from torch import Tensor, nn

from nasflow.runtime import MetricValue

from .classification import OptimizerFactory, SupervisedLearningModule, build_criterion, build_optimizer, metric_value
from .lightning import Lightning, LightningModule, Trainer
from .metrics import EpochMetrics

__all__ = [
    "TrainingConfig", "MergedModel", "MultiOptimizer", "MultiModelLightningModule", "MultiModelTrainer",
    "check_mergeable", "merge_evaluators", "split_multi_model_metric",
]

_logger = logging.getLogger(__name__)

DeviceMap = Mapping[int, torch.device | str]


@dataclass
class TrainingConfig:
    """How one model of a merged module is trained: its own loss, metrics, optimizer and schedule."""

    criterion: Any = nn.CrossEntropyLoss
    metrics: Mapping[str, Any] = field(default_factory=dict)
    optimizer: OptimizerFactory = torch.optim.Adam
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    lr_scheduler: Callable[[torch.optim.Optimizer], Any] | None = None
    lr_scheduler_interval: str = "epoch"  # or "step"

    def __post_init__(self) -> None:
        if self.lr_scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"lr_scheduler_interval must be 'epoch' or 'step', got {self.lr_scheduler_interval!r}.")

    @classmethod
    def from_module(cls, module: SupervisedLearningModule) -> TrainingConfig:
        """The config that trains like ``module`` (e.g. a Classification evaluator's module) does alone."""
        if not isinstance(module, SupervisedLearningModule):
            raise TypeError(f"Only a SupervisedLearningModule (Classification, Regression, ...) can be merged; "
                            f"got {type(module).__name__}.")
        return cls(criterion=module.criterion_factory, metrics=module.metric_specs, optimizer=module.optimizer,
                   learning_rate=module.learning_rate, weight_decay=module.weight_decay,
                   lr_scheduler=module.lr_scheduler)


class MergedModel(nn.Module):
    """Runs ``models`` side by side on one input and returns their outputs as a tuple.

    With ``device_map`` each model lives on its own device; the input is copied once per device.
    """

    def __init__(self, models: Sequence[nn.Module], device_map: DeviceMap | None = None) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)
        self.device_map: dict[int, torch.device] = {}
        self.place(device_map or {})

    def place(self, device_map: DeviceMap) -> None:
        for index, device in device_map.items():
            if not 0 <= index < len(self.models):
                raise ValueError(f"device_map names model {index}, but there are {len(self.models)} models.")
            self.models[index].to(device)
            self.device_map[index] = torch.device(device)

    def _device_of(self, index: int, fallback: torch.device) -> torch.device:
        for tensor in (*self.models[index].parameters(), *self.models[index].buffers()):
            return tensor.device
        return self.device_map.get(index, fallback)

    def forward(self, x: Any) -> tuple[Any, ...]:
        fallback = _first_tensor(x).device if _first_tensor(x) is not None else torch.device("cpu")
        copies: dict[torch.device, Any] = {}
        outputs = []
        for index, model in enumerate(self.models):
            device = self._device_of(index, fallback)
            if device not in copies:
                copies[device] = move_data_to_device(x, device)
            outputs.append(model(copies[device]))
        return tuple(outputs)

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        return [list(model.parameters()) for model in self.models]


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else ()
    for item in items:
        found = _first_tensor(item)
        if found is not None:
            return found
    return None


class _OnDevices:
    """A value copied lazily, at most once, to each device that asks for it."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.copies: dict[torch.device, Any] = {}

    def on(self, device: torch.device) -> Any:
        if device not in self.copies:
            self.copies[device] = move_data_to_device(self.value, device)
        return self.copies[device]


class MultiOptimizer(torch.optim.Optimizer):
    """One optimizer object over the per-model optimizers (and their schedulers).

    Lightning sees a single optimizer, so a batch is one optimizer step (``max_steps`` counts
    batches) and checkpoints save every model's optimizer and scheduler state.
    """

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer | None],
                 schedulers: Sequence[tuple[Any, str] | None] = ()) -> None:
        self.optimizers = list(optimizers)
        self.schedulers = list(schedulers) or [None] * len(self.optimizers)
        present = [opt for opt in self.optimizers if opt is not None]
        if not present:
            raise ValueError("None of the merged models has trainable parameters; there is nothing to optimize.")
        params = [p for opt in present for group in opt.param_groups for p in group["params"]]
        super().__init__(params, {})
        self.param_groups = [group for opt in present for group in opt.param_groups]  # the real ones: lr is live

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers:
            if optimizer is not None:
                optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=set_to_none)

    def step_schedulers(self, interval: str) -> None:
        for entry in self.schedulers:
            if entry is not None and entry[1] == interval:
                entry[0].step()

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {"optimizers": [opt.state_dict() if opt is not None else None for opt in self.optimizers],
                "schedulers": [entry[0].state_dict() if entry is not None else None for entry in self.schedulers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        for optimizer, state in zip(self.optimizers, state_dict["optimizers"], strict=True):
            if optimizer is not None:
                optimizer.load_state_dict(state)
        for entry, state in zip(self.schedulers, state_dict["schedulers"], strict=True):
            if entry is not None:
                entry[0].load_state_dict(state)


class MultiModelLightningModule(LightningModule):
    """Trains a merged module with N outputs, each model with its own :class:`TrainingConfig`.

    ``models`` is a list of modules (wrapped into a :class:`MergedModel`, placed by ``device_map``)
    or one merged module whose ``forward`` returns N outputs and whose ``parameter_groups()``
    returns N parameter lists (model i's parameters). It may also be given later with ``set_model``.
    ``configs`` is one config per model, or one config shared by all (``n_models`` then says how
    many when no model is given yet). Batches are ``(x, y)``; ``x`` goes to the merged module.
    """

    def __init__(self, models: Sequence[nn.Module] | nn.Module | None = None,
                 configs: TrainingConfig | Sequence[TrainingConfig] | None = None, *,
                 n_models: int | None = None, device_map: DeviceMap | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.device_map = dict(device_map or {})
        self.configs_given = configs if configs is not None else TrainingConfig()
        self.n_models = n_models
        self.configs: list[TrainingConfig] = []
        self.groups: list[list[nn.Parameter]] = []
        if not isinstance(self.configs_given, TrainingConfig):
            self._set_count(len(self.configs_given), "configs")
        if models is not None:
            self.set_model(models)

    def _set_count(self, n: int, source: str) -> None:
        if self.n_models is not None and self.n_models != n:
            raise ValueError(f"The {source} say there are {n} models, but n_models / configs say {self.n_models}.")
        self.n_models = n

    def set_model(self, model: Any) -> None:
        if isinstance(model, (list, tuple)):
            model = MergedModel(model, self.device_map)
        elif isinstance(model, MergedModel) and self.device_map:
            model.place(self.device_map)
        if not callable(getattr(model, "parameter_groups", None)):
            raise TypeError(f"{type(model).__name__} cannot be trained as several models: pass a list of modules, "
                            "or a merged module with parameter_groups() returning each model's parameters.")
        groups = [list(group) for group in model.parameter_groups()]
        self._set_count(len(groups), "parameter groups of the merged model")
        _check_groups(model, groups)
        self.model = model
        self.groups = groups
        shared = isinstance(self.configs_given, TrainingConfig)
        self.configs = [copy.copy(self.configs_given) for _ in groups] if shared else list(self.configs_given)
        self.criteria = [_own_criterion(config.criterion) for config in self.configs]
        self._train_metrics = [EpochMetrics(config.metrics) for config in self.configs]
        self._val = [EpochMetrics(config.metrics) for config in self.configs]
        self._test = [EpochMetrics(config.metrics) for config in self.configs]
        self._last_validation: list[dict[str, float]] | None = None

    def unset_model(self) -> None:
        super().unset_model()
        self.groups = [[] for _ in self.groups]  # they reference the parameters too

    # ---- steps ------------------------------------------------------------------------------
    def forward(self, x: Any) -> tuple[Any, ...]:
        outputs = self.model(x)
        if not isinstance(outputs, (tuple, list)) or len(outputs) != self.n_models:
            raise ValueError(f"The merged module must return {self.n_models} outputs (one per model), got "
                             f"{len(outputs) if isinstance(outputs, (tuple, list)) else type(outputs).__name__}.")
        return tuple(outputs)

    def _losses(self, batch: Any) -> tuple[list[Tensor], tuple[Any, ...], list[Any]]:
        x, y = batch
        outputs = self(x)
        targets = _OnDevices(y)
        target_list = [targets.on(_device(out)) for out in outputs]
        losses = [criterion(out, target) for criterion, out, target in zip(self.criteria, outputs, target_list,
                                                                            strict=True)]
        return losses, outputs, target_list

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        optimizer = self.optimizers()
        optimizer.zero_grad()
        losses, outputs, targets = self._losses(batch)
        total = losses[0]
        for loss in losses[1:]:  # d total / d loss_i is exactly 1, as for loss_i.backward() alone
            total = total + loss.to(total.device)
        self.manual_backward(total)
        self._clip_gradients()
        optimizer.step()
        self._multi_optimizer().step_schedulers("step")
        if self.logger is not None:  # per-model training curves cost 2N log calls a batch: only for a logger
            logged: dict[str, Any] = {}
            for index, (loss, out, target) in enumerate(zip(losses, outputs, targets, strict=True)):
                logged[f"train_{index}_loss"] = loss.detach()
                for name, value in self._train_metrics[index].batch_values(out, target).items():
                    logged[f"train_{index}_{name}"] = value
            self.log_dict(logged)
        return total.detach()

    def _multi_optimizer(self) -> MultiOptimizer:
        optimizer = self.optimizers()
        return getattr(optimizer, "optimizer", optimizer)

    def _clip_gradients(self) -> None:
        value, algorithm = getattr(self.trainer, "multi_model_gradient_clip", (None, None))
        if not value:
            return
        for group in self.groups:  # per model, as Lightning clips one model's optimizer alone
            if algorithm == "value":
                nn.utils.clip_grad_value_(group, value)
            else:
                nn.utils.clip_grad_norm_(group, value)

    def on_train_epoch_end(self) -> None:
        self._multi_optimizer().step_schedulers("epoch")

    def on_fit_start(self) -> None:
        self._last_validation = None
        for criterion, group in zip(self.criteria, self.groups, strict=True):
            if isinstance(criterion, nn.Module) and group:
                criterion.to(group[0].device)  # e.g. class weights follow the model's device

    def on_validation_epoch_start(self) -> None:
        for tracker in self._val:
            tracker.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        losses, outputs, targets = self._losses(batch)
        for tracker, loss, out, target in zip(self._val, losses, outputs, targets, strict=True):
            tracker.update(loss, out, target)

    def on_validation_epoch_end(self) -> None:
        values = [tracker.compute() for tracker in self._val]
        if all(values):
            self._last_validation = values
            self.log_dict({f"val_{index}_{name}": value for index, per_model in enumerate(values)
                           for name, value in per_model.items()})

    def on_test_epoch_start(self) -> None:
        for tracker in self._test:
            tracker.reset()

    def test_step(self, batch: Any, batch_idx: int) -> None:
        losses, outputs, targets = self._losses(batch)
        for tracker, loss, out, target in zip(self._test, losses, outputs, targets, strict=True):
            tracker.update(loss, out, target)

    def on_test_epoch_end(self) -> None:
        values = [tracker.compute() for tracker in self._test]
        if all(values):
            self.log_dict({f"test_{index}_{name}": value for index, per_model in enumerate(values)
                           for name, value in per_model.items()})

    def configure_optimizers(self) -> MultiOptimizer:
        optimizers: list[torch.optim.Optimizer | None] = []
        schedulers: list[tuple[Any, str] | None] = []
        for index, (config, group) in enumerate(zip(self.configs, self.groups, strict=True)):
            if not group:
                _logger.warning("Model %d of the merged module has no trainable parameters; it is not optimized.",
                                index)
                optimizers.append(None)
                schedulers.append(None)
                continue
            optimizer = build_optimizer(config.optimizer, group, config.learning_rate, config.weight_decay,
                                        **config.optimizer_kwargs)
            optimizers.append(optimizer)
            schedulers.append((config.lr_scheduler(optimizer), config.lr_scheduler_interval)
                              if config.lr_scheduler is not None else None)
        return MultiOptimizer(optimizers, schedulers)

    # ---- metrics ----------------------------------------------------------------------------
    def validation_metrics(self) -> MetricValue | None:
        if self._last_validation is None:
            return None
        per_model = [metric_value(values, list(config.metrics))
                     for values, config in zip(self._last_validation, self.configs, strict=True)]
        return {"default": per_model[0]["default"], **{f"model_{i}": value for i, value in enumerate(per_model)}}

    def requires_validation(self) -> bool:
        return True


def _device(output: Any) -> torch.device:
    tensor = _first_tensor(output)
    return tensor.device if tensor is not None else torch.device("cpu")


def _own_criterion(criterion: Any) -> Any:
    built = build_criterion(criterion)
    return copy.deepcopy(built) if built is criterion and isinstance(built, nn.Module) else built


def _check_groups(model: nn.Module, groups: list[list[nn.Parameter]]) -> None:
    """Groups must be disjoint and cover every trainable parameter, or merged training is not exact."""
    names = {id(p): name for name, p in model.named_parameters(remove_duplicate=False)}
    owner: dict[int, int] = {}
    for index, group in enumerate(groups):
        for param in group:
            if owner.setdefault(id(param), index) != index:
                raise ValueError(f"Parameter {names.get(id(param), '?')!r} belongs to models {owner[id(param)]} and "
                                 f"{index}; merged models must not share parameters.")
    for name, param in model.named_parameters():
        if param.requires_grad and id(param) not in owner:
            raise ValueError(f"Parameter {name!r} of the merged module belongs to no model's parameter group; "
                             "it would never be trained. Put it in one model's group.")


class _KeepPlacementStrategy(SingleDeviceStrategy):
    """Single-process strategy that never moves the module: sub-models stay where ``device_map`` put them."""

    def model_to_device(self) -> None:
        pass


_PLACEMENT_ARGS = ("accelerator", "strategy", "devices", "num_nodes")
_EXACT_PRECISIONS = (None, 32, "32", "32-true", 64, "64", "64-true")


class MultiModelTrainer(Trainer):
    """A :class:`Trainer` for :class:`MultiModelLightningModule`.

    Placement belongs to the module's ``device_map``, so ``accelerator`` / ``strategy`` /
    ``devices`` are refused; ``gradient_clip_val`` is applied per model; gradient accumulation and
    mixed precision are refused (they would break per-model exactness or placement).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for name in _PLACEMENT_ARGS:
            if name in kwargs:
                raise ValueError(f"MultiModelTrainer does not take {name!r}: sub-models are placed by the "
                                 "MultiModelLightningModule's device_map.")
        if kwargs.get("accumulate_grad_batches", 1) != 1:
            raise ValueError("MultiModelTrainer does not support accumulate_grad_batches (manual optimization).")
        if kwargs.get("precision") not in _EXACT_PRECISIONS:
            raise ValueError(f"MultiModelTrainer supports precision 32 or 64, got {kwargs['precision']!r}.")
        clip = (kwargs.pop("gradient_clip_val", None), kwargs.pop("gradient_clip_algorithm", None))
        super().__init__(*args, accelerator="cpu", strategy=_KeepPlacementStrategy(device=torch.device("cpu")),
                         **kwargs)
        self.multi_model_gradient_clip = clip


def check_mergeable(evaluators: Sequence[Any]) -> None:
    """Raise ValueError saying why ``evaluators`` cannot be trained as one merged trial."""
    if not evaluators:
        raise ValueError("Nothing to merge: no evaluators given.")
    first = evaluators[0]
    for index, evaluator in enumerate(evaluators):
        if not isinstance(evaluator, Lightning) or not isinstance(evaluator.module, SupervisedLearningModule):
            raise ValueError(f"Evaluator {index} ({type(evaluator).__name__}) is not a Lightning evaluator with a "
                             "SupervisedLearningModule (Classification, Regression), so it cannot be merged.")
        if not evaluator.shares_data_with(first):
            raise ValueError(f"Evaluator {index} does not share data loaders / trainer settings with evaluator 0.")
    kwargs = first.trainer.trace_kwargs
    if kwargs.get("accumulate_grad_batches", 1) != 1 or kwargs.get("precision") not in _EXACT_PRECISIONS:
        raise ValueError("Evaluators using gradient accumulation or mixed precision cannot be merged exactly.")


def merge_evaluators(evaluators: Sequence[Lightning], device_map: DeviceMap | None = None) -> Lightning:
    """One evaluator that trains the merged module of ``evaluators``' models, each model as its own
    evaluator would (its loss, optimizer, learning rate, metrics), on their shared data and trainer settings.

    The trainer's placement arguments (accelerator, devices, strategy) are replaced by ``device_map``.
    Evaluate it on a list of the models (or a merged module with ``parameter_groups()``); its reports
    have the multi-model shape (see :func:`split_multi_model_metric`).
    """
    check_mergeable(evaluators)
    first = evaluators[0]
    kwargs = {k: v for k, v in first.trainer.trace_kwargs.items() if k not in _PLACEMENT_ARGS}
    trainer = MultiModelTrainer(*first.trainer.trace_args, **kwargs)
    module = MultiModelLightningModule(configs=[TrainingConfig.from_module(ev.module) for ev in evaluators],
                                       device_map=device_map)
    return Lightning(module, trainer, first.train_dataloaders, first.val_dataloaders, first.datamodule,
                     first.fit_kwargs)


def split_multi_model_metric(value: MetricValue, n_models: int | None = None) -> list[MetricValue]:
    """Per-model metrics (model 0 first) from a multi-model report, for fanning out to the models."""
    if not isinstance(value, dict) or "model_0" not in value:
        raise ValueError(f"Not a multi-model metric (no 'model_0' entry): {value!r}.")
    count = n_models if n_models is not None else sum(1 for key in value if key.startswith("model_"))
    return [value[f"model_{index}"] for index in range(count)]
