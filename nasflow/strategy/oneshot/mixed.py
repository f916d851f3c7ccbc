"""Mixed modules: what ``LayerChoice``, ``InputChoice`` and a searched ``Repeat`` become in a supernet.

Each keeps the children and the mutable of the module it replaces (so ``simplify()`` and the state
dict keys of the space are unchanged), computes according to the supernet's :class:`Architecture`,
and freezes exactly as the original does: a frozen supernet is the frozen space, with the weights
the supernet trained (weight sharing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from nasflow.mutable import Categorical, Mutable, Sample
from nasflow.nn import InputChoice, LayerChoice, Repeat
from nasflow.nn.base import MutableModule, freeze_module
from nasflow.nn.choice import ChosenInputs

from .architecture import Architecture, value_index

__all__ = ["SupernetModule", "MixedLayer", "MixedInput", "MixedRepeat", "weighted_sum", "binary_gate",
           "side_effect_free"]


class SupernetModule(MutableModule):
    """Base of a supernet's modules: it reads the decisions in force from ``self.arch``.

    A mutation hook may return a subclass of its own; ``forward`` then looks at ``self.arch.sampled``,
    ``self.arch.value(mutable)`` and ``self.arch.probs(label)``, and ``freeze_shallow`` says what the
    module is in the frozen model of a sample.
    """

    arch: Architecture

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch


def weighted_sum(items: Sequence[Any], weights: Sequence[Tensor], label: str) -> Any:
    """``sum(w * x)`` over candidates' outputs, element by element for tuples, lists and dicts."""
    first = items[0]
    if isinstance(first, Tensor):
        shapes = {tuple(item.shape) for item in items}
        if len(shapes) > 1:
            raise ValueError(f"The candidates of {label!r} give outputs of shapes {sorted(shapes)}; a relaxed "
                             "(DARTS-style) supernet sums them, so they must agree. Make the candidates' "
                             "outputs the same shape, or use RandomOneShot / ENAS, which run one path.")
        return sum((w * x for w, x in zip(weights, items, strict=True)), torch.zeros_like(first))
    if isinstance(first, (tuple, list)):
        return type(first)(weighted_sum([item[i] for item in items], weights, label) for i in range(len(first)))
    if isinstance(first, dict):
        return {key: weighted_sum([item[key] for item in items], weights, label) for key in first}
    raise TypeError(f"The candidates of {label!r} return {type(first).__name__}; a relaxed supernet can only mix "
                    "tensors (or tuples, lists and dicts of them).")


def side_effect_free(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``module(*args)`` without gradients and without touching its buffers (BatchNorm statistics)."""
    buffers = {name: buffer.clone() for name, buffer in module.named_buffers()}
    with torch.no_grad():
        return functional_call(module, buffers, args, kwargs)


class _BinaryGate(torch.autograd.Function):
    """ProxylessNAS's binary gates: the forward pass is the sampled path's output; the backward pass
    gives the logits ``dL/dalpha_i = sum_j <dL/dy, o_j> p_j (delta_ij - p_i)`` (``o_j`` the outputs of
    the candidates, recomputed only here), and passes ``dL/dy`` on to the sampled path unchanged."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, output: Tensor, candidates: Callable[[int], Tensor],
                label: str) -> Tensor:
        ctx.save_for_backward(logits)
        ctx.candidates, ctx.label = candidates, label
        return output.view_as(output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (logits,) = ctx.saved_tensors
        probs = torch.softmax(logits.detach(), dim=-1)
        gates = []
        for j in range(len(probs)):
            candidate = ctx.candidates(j)
            if not isinstance(candidate, Tensor) or candidate.shape != grad.shape:
                raise ValueError(f"Proxyless needs every candidate of {ctx.label!r} to give an output of the sampled "
                                 f"one's shape {tuple(grad.shape)}; candidate {j} does not.")
            gates.append((grad * candidate).sum())
        binary = torch.stack(gates).to(probs.dtype)
        return probs * (binary - (probs * binary).sum()), grad, None, None


def binary_gate(logits: Tensor, output: Any, candidates: Callable[[int], Tensor], label: str) -> Any:
    if not isinstance(output, Tensor):
        raise TypeError(f"Proxyless gates one tensor, but {label!r} gives {type(output).__name__}.")
    return _BinaryGate.apply(logits, output, candidates, label)


class MixedLayer(SupernetModule):
    """A ``LayerChoice`` in a supernet: the sampled candidate, or the weighted sum of all of them."""

    def __init__(self, layer_choice: LayerChoice, arch: Architecture) -> None:
        super().__init__(arch)
        for name, module in layer_choice.named_children():
            self.add_module(name, module)
        self.choice: Categorical = self.add_mutable(layer_choice.choice)  # type: ignore[assignment]

    @property
    def label(self) -> str:
        return self.choice.label

    def candidate(self, value: Any) -> nn.Module:
        return self._modules[str(value)]  # type: ignore[return-value]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        arch = self.arch
        if not arch.sampled:
            outputs = [self.candidate(value)(*args, **kwargs) for value in self.choice.values]
            return weighted_sum(outputs, arch.probs(self.label), self.label)
        value = arch.value(self.choice)
        output = self.candidate(value)(*args, **kwargs)
        if not arch.gates:
            return output
        chosen = value_index(self.choice, value)

        def candidates(j: int) -> Tensor:
            if j == chosen:
                return output.detach()
            return side_effect_free(self.candidate(self.choice.values[j]), *args, **kwargs)

        return binary_gate(arch.logits[self.label], output, candidates, self.label)

    def freeze_shallow(self, sample: Sample) -> nn.Module:
        return freeze_module(self.candidate(self.choice.freeze(sample)), sample)

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


class MixedInput(SupernetModule):
    """An ``InputChoice`` in a supernet: the sampled inputs reduced, or a weighted sum of the inputs.

    Relaxed, input ``i`` gets weight ``p_i``, times ``n_chosen`` for a ``'sum'`` of several inputs
    (so the mixture has the scale of the sum it relaxes).
    """

    def __init__(self, input_choice: InputChoice, arch: Architecture) -> None:
        super().__init__(arch)
        self.n_candidates, self.n_chosen = input_choice.n_candidates, input_choice.n_chosen
        self.reduction = input_choice.reduction
        self.choice = self.add_mutable(input_choice.choice)

    @property
    def label(self) -> str:
        return self.choice.label

    def current_choice(self) -> list[int]:
        """The inputs picked now (a cell with loose ends asks)."""
        chosen = self.arch.value(self.choice)
        return list(chosen) if isinstance(chosen, (list, tuple)) else [chosen]

    def forward(self, candidate_inputs: list[Tensor]) -> Any:
        if len(candidate_inputs) != self.n_candidates:
            raise ValueError(f"InputChoice {self.label!r} expects {self.n_candidates} candidate inputs, "
                             f"got {len(candidate_inputs)}.")
        arch = self.arch
        if not arch.sampled:
            probs = arch.probs(self.label)
            if self.reduction == "sum" and self.n_chosen is not None:
                probs = probs * self.n_chosen
            return weighted_sum(candidate_inputs, probs, self.label)
        chosen = arch.value(self.choice)
        output = ChosenInputs(chosen, self.reduction)(candidate_inputs)
        if not arch.gates:
            return output
        return binary_gate(arch.logits[self.label], output,
                           lambda j: candidate_inputs[j].detach(), self.label)

    def freeze_shallow(self, sample: Sample) -> nn.Module:
        return ChosenInputs(self.choice.freeze(sample), self.reduction)

    def extra_repr(self) -> str:
        return f"n_candidates={self.n_candidates}, n_chosen={self.n_chosen}, label={self.label!r}"


class MixedRepeat(SupernetModule):
    """A ``Repeat`` of searched depth: the first ``depth`` blocks, or a weighted sum of the outputs at
    every possible depth (all of the same shape)."""

    def __init__(self, repeat: Repeat, arch: Architecture) -> None:
        super().__init__(arch)
        self._label = repeat.label
        self.depth_choice: Mutable = repeat.depth_choice  # type: ignore[assignment]
        self.add_mutable(self.depth_choice)
        self.blocks = repeat.blocks

    @property
    def label(self) -> str:
        return self._label

    def forward(self, x: Any) -> Any:
        arch = self.arch
        if not arch.sampled:
            weights = dict(_hashable(arch.distribution(self.depth_choice)))
            outputs, mixture = {0: x}, []
            for depth, block in enumerate(self.blocks, start=1):
                if depth > max(weights):
                    break
                x = outputs[depth] = block(x)
            for depth, weight in weights.items():
                mixture.append((outputs[depth], weight))
            return weighted_sum([o for o, _ in mixture], [w for _, w in mixture], self.label)
        depth = arch.value(self.depth_choice)
        prefix = [x]
        for block in self.blocks[:depth]:
            x = block(x)
            prefix.append(x)
        if not arch.gates:
            return x
        assert isinstance(self.depth_choice, Categorical)  # checked when the supernet was built
        depths = list(self.depth_choice.values)

        def candidates(j: int) -> Tensor:
            while len(prefix) <= depths[j]:
                prefix.append(side_effect_free(self.blocks[len(prefix) - 1], prefix[-1]))
            return prefix[depths[j]].detach()

        return binary_gate(arch.logits[self.depth_choice.label], x, candidates, self.label)

    def freeze_shallow(self, sample: Sample) -> nn.Module:
        depth = self.depth_choice.freeze(sample)
        return nn.Sequential(*(freeze_module(block, sample) for block in self.blocks[:depth]))

    def extra_repr(self) -> str:
        return f"depth={self.depth_choice!r}, label={self.label!r}"


def _hashable(pairs: list[tuple[Any, Tensor]]) -> list[tuple[int, Tensor]]:
    return [(int(value), weight) for value, weight in pairs]
