"""Training several models as one merged module (CGO): ``MultiModelLightningModule`` and ``MultiModelTrainer``.

One training stack. A merged module holds one *member* per model: a copy of that model's own
evaluator module (a ``ClassificationModule``, a user's ``LightningModule``, ...) with the model set
into it. The trainer drives the merged module, which runs every member's own hooks, in Lightning's
order for automatic optimization: each member's ``training_step`` on the shared batch, then one
backward pass of the summed losses (the gradient of a sum is exactly 1 for each loss, and the
models share no parameter, so each gets exactly the gradient it gets alone), then per member its
``on_before_optimizer_step``, ``configure_gradient_clipping`` (the trainer's
``gradient_clip_val``) and ``optimizer_step`` with its own optimizer. Its learning-rate schedulers
are stepped by Lightning's own loop (interval, frequency, monitor). A model trained merged thus
ends with the same weights, bit for bit, as trained alone on the same batches from the same
weights (batched models: to rounding, see ``merged_model``); its metrics are the same numbers.

Each member logs under its model's prefix (``self.log("val_acc", ...)`` in member 2 becomes
``model_2/val_acc``), so training costs and logs are the same per model as alone. After each
validation run the evaluator reports ``{'default': <model 0's default>, 'model_0': <model 0's
metric>, 'model_1': ..., ...}``, each per-model entry being what that model's evaluator reports
alone; :func:`split_multi_model_metric` turns it back into one value per model.

What cannot be merged exactly is refused by :func:`merge_refusal` (a model then trains alone):
manual optimization, a module that transforms batches itself (batch-transfer hooks) or overrides
``backward``, a module that reports through ``nasflow.report_*`` itself, ONNX export (one file per
model), trainer callbacks (they would see the merged module, not each model), distributed
strategies and mixed precision. Dropout and other randomness consume the random number generator
in another order when models are merged, so such models match only in distribution.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch.core.optimizer import _init_optimizers_and_lr_schedulers
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import Tensor

from nasflow.runtime import MetricValue, trial_context

from .lightning import Lightning, LightningModule, Trainer
from .merged_model import MergedModel, device_of, move_once

__all__ = [
    "MultiOptimizer", "MultiModelLightningModule", "MultiModelTrainer", "merge_refusal", "evaluator_merge_refusal",
    "check_mergeable", "merge_evaluators", "split_multi_model_metric",
]

_logger = logging.getLogger(__name__)

# Lightning hooks the merged module runs on every member, with the same arguments.
_FORWARDED = (
    "on_fit_start", "on_fit_end", "on_train_start", "on_train_end", "on_train_epoch_start", "on_train_epoch_end",
    "on_validation_start", "on_validation_end", "on_validation_epoch_start", "on_validation_epoch_end",
    "on_test_start", "on_test_end", "on_test_epoch_start", "on_test_epoch_end", "on_after_backward",
)
# Member hooks that must keep Lightning's default for merging to be exact.
_MUST_NOT_OVERRIDE = {
    "backward": "overrides backward() (merged models share one backward pass)",
    "on_before_batch_transfer": "transforms its batches (merged models share each batch)",
    "transfer_batch_to_device": "transforms its batches (merged models share each batch)",
    "on_after_batch_transfer": "transforms its batches (merged models share each batch)",
}
_PLACEMENT_ARGS = ("accelerator", "strategy", "devices", "num_nodes")
_EXACT_PRECISIONS = (None, 32, "32", "32-true", 64, "64", "64-true")


class MultiOptimizer(torch.optim.Optimizer):
    """One optimizer object over the members' optimizers.

    Lightning sees a single optimizer, so a batch is one optimizer step (``max_steps`` and
    ``global_step`` count batches, as for one model) and checkpoints hold every model's state.
    """

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self.optimizers = list(optimizers)
        params = [p for opt in self.optimizers for group in opt.param_groups for p in group["params"]]
        super().__init__(params, {})
        self.param_groups = [group for opt in self.optimizers for group in opt.param_groups]  # live: lr is real

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        for optimizer, state in zip(self.optimizers, state_dict["optimizers"], strict=True):
            optimizer.load_state_dict(state)


def _overrides(module: Any, name: str, base: type) -> bool:
    return getattr(type(module), name, None) is not getattr(base, name, None)


def merge_refusal(module: Any) -> str | None:
    """Why models trained by evaluator module ``module`` cannot be merged exactly, or None."""
    if not isinstance(module, LightningModule):
        return f"{type(module).__name__} is not a nasflow.evaluator.LightningModule"
    name = type(module).__name__
    if not module.automatic_optimization:
        return f"{name} uses manual optimization"
    for hook, why in _MUST_NOT_OVERRIDE.items():
        if _overrides(module, hook, LightningModule):
            return f"{name} {why}"
    if not _overrides(module, "validation_metrics", LightningModule):
        return f"{name} reports its metrics itself (it does not implement validation_metrics())"
    if getattr(module, "export_onnx", None):
        return f"{name} exports the model to ONNX (one file per model)"
    return None


class MultiModelLightningModule(LightningModule):
    """Trains N models at once, each by its own evaluator module (a *member*).

    ``members`` is one module per model, or one module copied for ``n_models`` models. Give the
    models with ``set_model``: a :class:`~nasflow.evaluator.merged_model.MergedModel` (its
    placement and batch groups are kept) or a list of modules. Members are children
    ``model_0``, ``model_1``, ... (checkpoint keys read ``model_0.model.<layer>``).
    """

    def __init__(self, members: LightningModule | Sequence[LightningModule], n_models: int | None = None) -> None:
        super().__init__()
        if isinstance(members, LightningModule):
            if n_models is None:
                raise ValueError("Give n_models with a single module (one copy of it trains each model).")
            members = [copy.deepcopy(members) for _ in range(n_models)]
        members = list(members)
        if not members or (n_models is not None and n_models != len(members)):
            raise ValueError(f"Got {len(members)} member modules for n_models={n_models}.")
        if len({id(member) for member in members}) != len(members):
            raise ValueError("Each model needs its own member module: pass copies (copy.deepcopy), not one twice.")
        for index, member in enumerate(members):
            reason = merge_refusal(member)
            if reason is not None:
                raise ValueError(f"Model {index} cannot be trained merged: {reason}. Train it alone.")
            self.add_module(f"model_{index}", member)
        self.n_models = len(members)
        self.merged: MergedModel | None = None
        self._devices: list[torch.device] = []
        self._optimizers: list[torch.optim.Optimizer] = []
        self._scheduler_owner: dict[int, int] = {}
        self._scheduler_configs: list[Any] = []
        self._losses: list[Tensor | None] = []
        self._outputs: list[Any] = []

    @property
    def members(self) -> list[LightningModule]:
        return [getattr(self, f"model_{index}") for index in range(self.n_models)]

    # ---- models -----------------------------------------------------------------------------
    def set_model(self, model: Any) -> None:
        """Put model ``i`` into member ``i``: a list of modules or a :class:`MergedModel`."""
        if isinstance(model, (list, tuple)):
            model = MergedModel(model)
        if not isinstance(model, MergedModel):
            raise TypeError(f"A merged module trains a MergedModel or a list of models, got {type(model).__name__}.")
        if len(model.models) != self.n_models:
            raise ValueError(f"{len(model.models)} models for {self.n_models} member modules.")
        _check_disjoint(model)
        self.__dict__["merged"] = model  # not a child: the members hold the models
        for index, (member, sub) in enumerate(zip(self.members, model.models, strict=True)):
            member.set_model(sub)
            member.to(device_of(sub))  # the member's own tensors (a weighted loss) and its `device` follow
            member.__dict__["_nasflow_host"] = (self, f"model_{index}/")

    def unset_model(self) -> None:
        for member in self.members:
            member.unset_model()
            member.__dict__.pop("_nasflow_host", None)
        if self.merged is not None:
            self.merged.unbatch()
        self.__dict__["merged"] = None
        self._optimizers, self._losses, self._outputs = [], [], []

    def forward(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        outputs = []
        for index, member in enumerate(self.members):
            inputs = self._inputs_for(index, (args, kwargs))
            outputs.append(member(*inputs[0], **inputs[1]))
        return tuple(outputs)

    # ---- running members' hooks -------------------------------------------------------------
    def _hook(self, member: LightningModule, name: str, *args: Any) -> Any:
        """``member.<name>(*args)`` with this module's current hook set to ``name``, so the member's
        ``self.log`` calls are checked against the hook it runs in."""
        previous = self._current_fx_name
        self._current_fx_name = name
        try:
            return getattr(member, name)(*args)
        finally:
            self._current_fx_name = previous

    def _each(self, name: str, *args: Any) -> None:
        for member in self.members:
            self._hook(member, name, *args)

    def _inputs_for(self, index: int, batch: Any) -> Any:
        copies = self.__dict__.setdefault("_copies", (None, {}))
        if copies[0] is not batch:
            copies = self.__dict__["_copies"] = (batch, {})
        device = self._devices[index] if self._devices else device_of(self.members[index])
        return move_once(batch, device, copies[1])

    # ---- fit --------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        self._each("setup", stage)

    def teardown(self, stage: str) -> None:
        self._each("teardown", stage)
        self.__dict__.pop("_copies", None)

    def configure_optimizers(self) -> MultiOptimizer:
        """Each member's own ``configure_optimizers``, parsed by Lightning as for a solo run."""
        self._optimizers, self._scheduler_configs, self._scheduler_owner = [], [], {}
        for index, member in enumerate(self.members):
            optimizers, schedulers = _init_optimizers_and_lr_schedulers(member)
            if len(optimizers) != 1:
                raise ValueError(f"Model {index}'s module returns {len(optimizers)} optimizers; a merged model "
                                 "needs exactly one (automatic optimization).")
            self._optimizers.append(optimizers[0])
            for config in schedulers:
                if config.monitor is not None:
                    config.monitor = f"model_{index}/{config.monitor}"
                self._scheduler_owner[id(config.scheduler)] = index
                self._scheduler_configs.append(config)
        return MultiOptimizer(self._optimizers)

    def on_fit_start(self) -> None:
        """Lightning steps the members' schedulers as a solo run's: register them with the trainer."""
        self._devices = [device_of(member) for member in self.members]
        self.trainer.strategy.lr_scheduler_configs = [*self.trainer.strategy.lr_scheduler_configs,
                                                      *self._scheduler_configs]
        _FORWARDING["on_fit_start"](self)

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        self._hook(self.members[self._scheduler_owner[id(scheduler)]], "lr_scheduler_step", scheduler, metric)

    # ---- training ---------------------------------------------------------------------------
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        for index, member in enumerate(self.members):
            if self._hook(member, "on_train_batch_start", self._inputs_for(index, batch), batch_idx) == -1:
                raise RuntimeError(f"Model {index}'s module skips the rest of the epoch (on_train_batch_start "
                                   "returned -1); merged models share their epochs, so it must train alone.")

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        self._losses, self._outputs = [], []
        for index, member in enumerate(self.members):
            output = self._hook(member, "training_step", self._inputs_for(index, batch), batch_idx)
            self._outputs.append(output)
            self._losses.append(_loss_of(output, index))
        present = [loss for loss in self._losses if loss is not None]
        if not present:
            return None
        total = present[0]
        for loss in present[1:]:  # d total / d loss_i is exactly 1, as for loss_i.backward() alone
            total = total + loss.to(total.device)
        return total

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for index, member in enumerate(self.members):
            self._hook(member, "on_train_batch_end", self._outputs[index], self._inputs_for(index, batch), batch_idx)

    def on_before_backward(self, loss: Tensor) -> None:
        for member, own in zip(self.members, self._losses, strict=True):
            if own is not None:
                self._hook(member, "on_before_backward", own)

    def on_before_zero_grad(self, optimizer: Any) -> None:
        for member, own in zip(self.members, self._optimizers, strict=True):
            self._hook(member, "on_before_zero_grad", own)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any) -> None:
        for member, own in zip(self.members, self._optimizers, strict=True):
            self._hook(member, "optimizer_zero_grad", epoch, batch_idx, own)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any,
                       optimizer_closure: Callable[[], Any] | None = None) -> None:
        """Run Lightning's closure (every member's step and the backward pass), then each member's
        own ``optimizer_step`` with its optimizer and a closure that clips its gradients."""
        if optimizer_closure is not None:
            optimizer_closure()
        for index, (member, own) in enumerate(zip(self.members, self._optimizers, strict=True)):
            closure = _MemberClosure(self, index, member, own)
            self._hook(member, "optimizer_step", epoch, batch_idx, own, closure)

    # ---- evaluation -------------------------------------------------------------------------
    def validation_step(self, batch: Any, batch_idx: int, *rest: Any) -> None:
        for index, member in enumerate(self.members):
            self._hook(member, "validation_step", self._inputs_for(index, batch), batch_idx, *rest)

    def test_step(self, batch: Any, batch_idx: int, *rest: Any) -> None:
        for index, member in enumerate(self.members):
            self._hook(member, "test_step", self._inputs_for(index, batch), batch_idx, *rest)

    def validation_metrics(self) -> MetricValue | None:
        values = []
        for member in self.members:
            with _no_reports(member):
                values.append(member.validation_metrics())
        if any(value is None for value in values):
            return None
        default = values[0]["default"] if isinstance(values[0], dict) else values[0]
        return {"default": default, **{f"model_{index}": value for index, value in enumerate(values)}}

    def requires_validation(self) -> bool:
        return any(member.requires_validation() for member in self.members)


def _forwarding(name: str) -> Callable[..., None]:
    def hook(self: MultiModelLightningModule, *args: Any) -> None:
        for member in self.members:
            with _no_reports(member):
                self._hook(member, name, *args)

    hook.__name__ = hook.__qualname__ = name
    hook.__doc__ = f"Every member's ``{name}``."
    return hook


_FORWARDING = {name: _forwarding(name) for name in _FORWARDED}
for _name, _hook in _FORWARDING.items():
    if _name not in vars(MultiModelLightningModule):
        setattr(MultiModelLightningModule, _name, _hook)


class _MemberClosure:
    """What a member's ``optimizer_step`` calls: its ``on_before_optimizer_step`` and gradient
    clipping (the loss and gradients are already computed); returns its loss, once."""

    def __init__(self, owner: MultiModelLightningModule, index: int, member: LightningModule,
                 optimizer: torch.optim.Optimizer) -> None:
        self.owner, self.index, self.member, self.optimizer = owner, index, member, optimizer
        self.called = False

    def __call__(self) -> Tensor | None:
        if self.called:
            raise RuntimeError(f"Model {self.index}'s optimizer calls its closure more than once a step (e.g. "
                               "LBFGS); merged models compute each step once, so it must train alone.")
        self.called = True
        trainer = self.owner.trainer
        self.owner._hook(self.member, "on_before_optimizer_step", self.optimizer)
        self.owner._hook(self.member, "configure_gradient_clipping", self.optimizer, trainer.gradient_clip_val,
                         trainer.gradient_clip_algorithm)
        return self.owner._losses[self.index]


class _RefuseReports:
    def __init__(self, member: LightningModule) -> None:
        self.name = type(member).__name__

    def __call__(self, kind: str, value: Any) -> None:
        raise RuntimeError(f"{self.name} reported a metric through nasflow.report_* inside a merged trial; merged "
                           "models report what validation_metrics() returns. Train this model alone.")


def _no_reports(member: LightningModule) -> Any:
    """Inside a member's epoch hooks, ``nasflow.report_*`` is an error (it would report for all models)."""
    return trial_context(_RefuseReports(member))


def _loss_of(output: Any, index: int) -> Tensor | None:
    if output is None or isinstance(output, Tensor):
        return output
    if isinstance(output, dict) and "loss" in output:
        return output["loss"]
    raise TypeError(f"Model {index}'s training_step returned {type(output).__name__}; return the loss tensor, "
                    "a dict with 'loss', or None.")


def _check_disjoint(model: MergedModel) -> None:
    """Models of a merged module must not share parameters, or merged training is not exact."""
    owner: dict[int, int] = {}
    for index, sub in enumerate(model.models):
        for name, param in sub.named_parameters():
            if owner.setdefault(id(param), index) != index:
                raise ValueError(f"Parameter {name!r} of model {index} also belongs to model {owner[id(param)]}; "
                                 "merged models must not share parameters.")


class _KeepPlacementStrategy(SingleDeviceStrategy):
    """Single-process strategy that never moves the module: models stay where the plan put them."""

    def model_to_device(self) -> None:
        pass


class MultiModelTrainer(Trainer):
    """A :class:`Trainer` for :class:`MultiModelLightningModule`.

    Placement belongs to the merged model (``device`` is where batches arrive; models on other
    devices get a copy), so ``accelerator`` / ``strategy`` / ``devices`` are refused; mixed
    precision is refused (one gradient scaler would couple the models).
    """

    def __init__(self, *args: Any, device: str | torch.device = "cpu", **kwargs: Any) -> None:
        for name in _PLACEMENT_ARGS:
            if name in kwargs:
                raise ValueError(f"MultiModelTrainer does not take {name!r}: the merged model places its models.")
        if kwargs.get("precision") not in _EXACT_PRECISIONS:
            raise ValueError(f"MultiModelTrainer supports precision 32 or 64, got {kwargs['precision']!r}.")
        root = torch.device(device)
        cuda = root.type == "cuda"
        super().__init__(*args, accelerator="cuda" if cuda else "cpu", devices=[root.index or 0] if cuda else 1,
                         strategy=_KeepPlacementStrategy(device=root), **kwargs)


def evaluator_merge_refusal(evaluator: Any) -> str | None:
    """Why ``evaluator``'s models cannot train merged (see :func:`merge_refusal`), or None."""
    if not isinstance(evaluator, Lightning):
        return f"{type(evaluator).__name__} is not a Lightning evaluator"
    kwargs = evaluator.trainer.trace_kwargs
    if kwargs.get("callbacks"):
        return "its trainer has callbacks, which would see the merged module rather than each model"
    if kwargs.get("precision") not in _EXACT_PRECISIONS:
        return f"precision {kwargs['precision']!r} (mixed precision couples merged models through one scaler)"
    strategy = kwargs.get("strategy")
    if strategy not in (None, "auto") or kwargs.get("num_nodes", 1) != 1:
        return "its trainer uses a distributed strategy"
    return merge_refusal(evaluator.module)


def check_mergeable(evaluators: Sequence[Any]) -> None:
    """Raise ValueError saying why ``evaluators`` cannot be trained as one merged trial."""
    if not evaluators:
        raise ValueError("Nothing to merge: no evaluators given.")
    first = evaluators[0]
    for index, evaluator in enumerate(evaluators):
        reason = evaluator_merge_refusal(evaluator)
        if reason is not None:
            raise ValueError(f"Evaluator {index} cannot be merged: {reason}.")
        if not evaluator.shares_data_with(first):
            raise ValueError(f"Evaluator {index} does not share data loaders / trainer settings with evaluator 0.")


def merge_evaluators(evaluators: Sequence[Lightning], device: str | torch.device = "cpu") -> Lightning:
    """One evaluator that trains the merged module of ``evaluators``' models, each model by a copy of
    its own evaluator's module, on their shared data and trainer settings.

    The trainer's placement arguments (accelerator, devices, strategy) give way to the merged
    model's placement; ``device`` is where batches arrive. Evaluate it on a :class:`MergedModel`
    (or a list of the models); its reports have the multi-model shape (:func:`split_multi_model_metric`).
    """
    check_mergeable(evaluators)
    first = evaluators[0]
    kwargs = {k: v for k, v in first.trainer.trace_kwargs.items() if k not in _PLACEMENT_ARGS}
    trainer = MultiModelTrainer(*first.trainer.trace_args, device=device, **kwargs)
    module = MultiModelLightningModule([copy.deepcopy(evaluator.module) for evaluator in evaluators])
    return Lightning(module, trainer, first.train_dataloaders, first.val_dataloaders, first.datamodule,
                     first.fit_kwargs)


def split_multi_model_metric(value: MetricValue, n_models: int | None = None) -> list[MetricValue]:
    """Per-model metrics (model 0 first) from a multi-model report, for fanning out to the models."""
    if not isinstance(value, dict) or "model_0" not in value:
        raise ValueError(f"Not a multi-model metric (no 'model_0' entry): {value!r}.")
    count = n_models if n_models is not None else sum(1 for key in value if key.startswith("model_"))
    return [value[f"model_{index}"] for index in range(count)]

