"""The physical module of a merged (CGO) trial: N models side by side, same-structure ones batched.

``MergedModel(models, batch_groups, device_map)`` runs every model on one input and returns their
outputs as a tuple; the input is copied once per device. Each model stays an ordinary module that
owns its parameters, so each is trained by its own evaluator module and optimizer.

Operator batching (HFTA-style horizontal fusion, which NNI's Retiarii described but never
shipped): the models of a batch group share their structure (same architecture, other seeds or
training hyperparameters). Their forward passes run as one vectorized computation: the group's
parameters are stacked (``torch.stack``, differentiable, so each model's gradient lands in its own
parameters) and one template module runs under ``torch.func.vmap(functional_call(...))``. A model
of the group computes the whole group's outputs on its first call with an input and hands the
others theirs, so the members' own training steps stay unchanged.

Tolerance: vmap turns a group's matrix products into batched ones, whose kernels sum in another
order, so batched models match their solo training to rounding error, not bit for bit as unbatched
merging does: after a few steps, about 1e-7 relative in float32 and 1e-16 in float64, growing
slowly with training (the tests hold them to 2e-5 and 1e-13). What is never batched (the group
trains merged without batching, and the log says why):

- models with buffers (BatchNorm running statistics would be updated on stacked copies);
- groups whose parameters differ in name, shape, dtype, device or ``requires_grad``;
- groups whose batched forward fails or disagrees with the models' own forward on the first input
  (checked once, in eval mode, before any training step uses it).

Random operations (dropout) draw independent values per model (vmap ``randomness='different'``):
such models match their solo runs in distribution, as merged models without batching do.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

__all__ = ["MergedModel", "BatchedGroup", "batching_refusal", "move_once"]

_logger = logging.getLogger(__name__)

DeviceMap = Mapping[int, torch.device | str]


def batching_refusal(models: Sequence[nn.Module]) -> str | None:
    """Why ``models`` cannot run as one vectorized computation, or None if they can."""
    if len(models) < 2:
        return "a batch group needs at least two models"
    first = [(name, p.shape, p.dtype, p.device, p.requires_grad) for name, p in models[0].named_parameters()]
    if not first:
        return "the models have no parameters"
    for index, model in enumerate(models):
        buffers = [name for name, _ in model.named_buffers()]
        if buffers:
            return f"model {index} has buffers ({buffers[0]!r}, ...), which batching would not update"
        if [(name, p.shape, p.dtype, p.device, p.requires_grad) for name, p in model.named_parameters()] != first:
            return f"model {index}'s parameters differ from model 0's in name, shape, dtype, device or requires_grad"
    return None


def _select(value: Any, index: int) -> Any:
    """Model ``index``'s part of a batched output (tensors, and tuples / lists / dicts of them)."""
    if isinstance(value, Tensor):
        return value[index]
    if isinstance(value, (tuple, list)):
        return type(value)(_select(item, index) for item in value)
    if isinstance(value, dict):
        return {key: _select(item, index) for key, item in value.items()}
    raise TypeError(f"A batched model returned {type(value).__name__}; batching supports tensors and "
                    "tuples, lists and dicts of them.")


def _close(batched: Any, alone: Any) -> bool:
    if isinstance(alone, Tensor):
        if not isinstance(batched, Tensor) or batched.shape != alone.shape or batched.dtype != alone.dtype:
            return False
        if not alone.is_floating_point():
            return torch.equal(batched, alone)
        tolerance = 1e-9 if alone.dtype == torch.float64 else 1e-3
        return torch.allclose(batched, alone, rtol=tolerance, atol=tolerance)
    if isinstance(alone, (tuple, list)):
        return len(batched) == len(alone) and all(_close(b, a) for b, a in zip(batched, alone, strict=True))
    if isinstance(alone, dict):
        return batched.keys() == alone.keys() and all(_close(batched[k], alone[k]) for k in alone)
    return False


class _Computed:
    """One batched forward: its inputs (held, so identity checks stay valid) and each model's output."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any], key: tuple[Any, ...], outputs: list[Any]):
        self.args, self.kwargs, self.key, self.outputs = args, kwargs, key, outputs
        self.taken = [False] * len(outputs)

    def serves(self, index: int, args: tuple[Any, ...], kwargs: dict[str, Any], key: tuple[Any, ...]) -> bool:
        return (not self.taken[index] and key == self.key and len(args) == len(self.args)
                and all(a is b for a, b in zip(args, self.args, strict=True))
                and kwargs.keys() == self.kwargs.keys() and all(kwargs[k] is self.kwargs[k] for k in kwargs))


class BatchedGroup:
    """Runs the forward passes of same-structure ``models`` as one vectorized computation.

    ``attach()`` points each model's ``forward`` at the group; ``detach()`` restores them (the
    models are then plain modules again). Not an ``nn.Module``: the models own the parameters.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        reason = batching_refusal(models)
        if reason is not None:
            raise ValueError(f"These models cannot be batched: {reason}.")
        self.models = list(models)
        self.template = copy.deepcopy(self.models[0]).to("meta")  # the code; the weights are each model's
        self.names = [name for name, _ in self.models[0].named_parameters()]
        self.params = [[dict(m.named_parameters())[name] for m in self.models] for name in self.names]
        self.enabled = True
        self.verified = False
        self._computed: _Computed | None = None
        self._forwards: list[Any] = []

    # ---- wiring -----------------------------------------------------------------------------
    def attach(self) -> None:
        if self._forwards:
            return
        for index, model in enumerate(self.models):
            self._forwards.append(model.forward)
            model.forward = _GroupForward(self, index)  # type: ignore[method-assign]

    def detach(self) -> None:
        for model in self.models:
            model.__dict__.pop("forward", None)
        self._forwards = []
        self._computed = None

    # ---- computing --------------------------------------------------------------------------
    def output(self, index: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Model ``index``'s output: from the group's batched forward on these inputs, computed when
        this model is the first to ask (or asks again)."""
        if not self.enabled:
            return self._forwards[index](*args, **kwargs)
        key = (torch.is_grad_enabled(), *(m.training for m in self.models),
               *(a._version for a in args if isinstance(a, Tensor)))
        computed = self._computed
        if computed is None or not computed.serves(index, args, kwargs, key):
            outputs = self._compute(args, kwargs)
            if outputs is None:  # batching was just turned off
                return self._forwards[index](*args, **kwargs)
            computed = self._computed = _Computed(args, kwargs, key, outputs)
        computed.taken[index] = True
        if all(computed.taken):
            self._computed = None  # every model has its output: free the inputs
        return computed.outputs[index]

    def _compute(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
        modes = {m.training for m in self.models}
        if len(modes) > 1:
            return [forward(*args, **kwargs) for forward in self._forwards]
        if not self.verified and not self._verify(args, kwargs):
            return None
        try:
            batched = self._batched(args, kwargs, modes.pop())
        except Exception as err:  # an operation vmap cannot batch, met only now: run unbatched from here on
            self._disable(f"the batched forward failed ({err!r})")
            return None
        return [_select(batched, index) for index in range(len(self.models))]

    def _batched(self, args: tuple[Any, ...], kwargs: dict[str, Any], training: bool) -> Any:
        self.template.train(training)
        stacked = {name: torch.stack(params) for name, params in zip(self.names, self.params, strict=True)}

        def run(parameters: dict[str, Tensor], *inputs: Any) -> Any:
            return functional_call(self.template, parameters, inputs, kwargs)

        in_dims = (0, *(None for _ in args))
        return vmap(run, in_dims=in_dims, randomness="different")(stacked, *args)

    def _verify(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Once, on the first input: the batched forward must agree with each model's own (eval mode)."""
        self.verified = True
        modes = [m.training for m in self.models]
        try:
            with torch.no_grad():
                for model in self.models:
                    model.eval()
                alone = [forward(*args, **kwargs) for forward in self._forwards]
                batched = self._batched(args, kwargs, False)
                agree = all(_close(_select(batched, i), out) for i, out in enumerate(alone))
        except Exception as err:
            self._disable(f"the batched forward failed ({err!r})")
            return False
        finally:
            for model, mode in zip(self.models, modes, strict=True):
                model.train(mode)
        if not agree:
            self._disable("the batched forward disagrees with the models' own forward")
        return agree

    def _disable(self, reason: str) -> None:
        self.enabled = False
        _logger.warning("Batching %d %s models is off (%s); they train merged without batching.",
                        len(self.models), type(self.models[0]).__name__, reason)


class _GroupForward:
    """A batched model's ``forward``: its output from the group's vectorized computation."""

    def __init__(self, group: BatchedGroup, index: int) -> None:
        self.group, self.index = group, index

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.group.output(self.index, args, kwargs)


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else ()
    for item in items:
        found = _first_tensor(item)
        if found is not None:
            return found
    return None


def device_of(module: nn.Module, fallback: torch.device | None = None) -> torch.device:
    """Where ``module``'s first parameter or buffer lives (``fallback``, else CPU, when it has none)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return fallback or torch.device("cpu")


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(_to_device(item, device) for item in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_to_device(item, device) for item in value)
    if isinstance(value, dict):
        return type(value)((key, _to_device(item, device)) for key, item in value.items())
    return value


def move_once(value: Any, device: torch.device, copies: dict[torch.device, Any]) -> Any:
    """``value`` (tensors, possibly in tuples, lists and dicts) on ``device``, copied at most once
    per device: ``copies`` remembers what was made; what is already there is not copied."""
    if device not in copies:
        first = _first_tensor(value)
        copies[device] = value if first is None or first.device == device else _to_device(value, device)
    return copies[device]


class MergedModel(nn.Module):
    """Runs ``models`` side by side on one input and returns their outputs as a tuple.

    ``batch_groups`` lists model indices whose models run batched (see the module docstring); a
    group that cannot be batched is merged without batching. ``device_map`` puts
    models on devices (a batch group's models on one device); the input is copied once per device.
    """

    def __init__(self, models: Sequence[nn.Module], batch_groups: Sequence[Sequence[int]] = (),
                 device_map: DeviceMap | None = None) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)
        self.device_map: dict[int, torch.device] = {}
        seen: set[int] = set()
        for group in batch_groups:
            if any(not 0 <= i < len(self.models) or i in seen for i in group):
                raise ValueError(f"Batch group {list(group)} names a model twice or one of fewer than "
                                 f"{len(self.models)} models.")
            seen.update(group)
        self.batch_groups = [list(group) for group in batch_groups if len(group) > 1]
        self.place(device_map or {})
        self.groups: list[BatchedGroup] = []
        for indices in self.batch_groups:
            members = [self.models[i] for i in indices]
            reason = batching_refusal(members)
            if reason is not None:
                _logger.info("Models %s train merged without batching: %s.", indices, reason)
                continue
            group = BatchedGroup(members)
            group.attach()
            self.groups.append(group)

    def place(self, device_map: DeviceMap) -> None:
        """Move models to devices; the models of a batch group must go to one device."""
        for index, device in device_map.items():
            if not 0 <= index < len(self.models):
                raise ValueError(f"device_map names model {index}, but there are {len(self.models)} models.")
            self.device_map[index] = torch.device(device)
        for group in self.batch_groups:
            devices = {self.device_map[i] for i in group if i in self.device_map}
            if len(devices) > 1:
                raise ValueError(f"device_map puts batch group {group} on {sorted(map(str, devices))}; a batch "
                                 "group trains on one device.")
        for index, device in device_map.items():
            self.models[index].to(device)

    def unbatch(self) -> None:
        """Restore every model's own ``forward`` (after training, the models are plain modules again)."""
        for group in self.groups:
            group.detach()
        self.groups = []

    def forward(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        first = _first_tensor((args, kwargs))
        fallback = first.device if first is not None else torch.device("cpu")
        copies: dict[torch.device, Any] = {}
        outputs = []
        for model in self.models:
            inputs = move_once((args, kwargs), device_of(model, fallback), copies)
            outputs.append(model(*inputs[0], **inputs[1]))
        return tuple(outputs)
