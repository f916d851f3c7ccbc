"""``LayerChoice`` (one of several modules) and ``InputChoice`` (some of several tensors)."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from torch import nn

from nasflow.mutable import MISSING, Categorical, CategoricalMultiple, Sample, auto_label
from nasflow.mutable.symbol import index_of

from .base import MutableModule, check_module_contains, current_sample, freeze_module

__all__ = ["LayerChoice", "InputChoice", "ChosenInputs", "ValueChoice", "ReductionType", "require_plain"]

ReductionType = Literal["mean", "concat", "sum", "none"]


def require_plain(value: Any, what: str, where: str) -> Any:
    """Refuse a mutable where only a plain value makes sense (e.g. a number of candidates)."""
    from nasflow.mutable import Mutable

    if isinstance(value, Mutable):
        raise TypeError(
            f"{where}: {what} must be a plain value, got the mutable {value!r}. "
            f"Choose {what} before building the module, or search over it with a LayerChoice."
        )
    return value


def _candidate_dict(candidates: Any, label: str) -> OrderedDict[str, nn.Module]:
    if isinstance(candidates, dict):
        items = list(candidates.items())
    elif isinstance(candidates, (list, tuple, nn.ModuleList)):
        items = [(str(i), c) for i, c in enumerate(candidates)]
    else:
        raise TypeError(f"LayerChoice {label!r}: candidates must be a list or dict of modules, got {type(candidates)}.")
    if not items:
        raise ValueError(f"LayerChoice {label!r} has no candidates; give it at least one module.")
    for name, module in items:
        if not isinstance(module, nn.Module):
            raise TypeError(f"LayerChoice {label!r}: candidate {name!r} is {module!r}, not an nn.Module.")
    return OrderedDict((str(name), module) for name, module in items)


def _legacy_weights(weights: Any, prior: Any, where: str) -> Any:
    if prior is None:
        return weights
    warnings.warn(f"{where}: `prior` is deprecated (NNI 2.x); use `weights`.", DeprecationWarning, stacklevel=3)
    return weights if weights is not None else prior


class LayerChoice(MutableModule):
    """One module out of ``candidates`` (a list: sample value is the index; a dict: the key).

    Item access and assignment work as in NNI: ``choice[1]``, ``choice['conv3x3'] = nn.Conv2d(...)``
    (replacing a candidate, not adding one), ``len(choice)``, ``list(choice)``. Built inside
    ``model_context``, it returns the chosen candidate itself.
    """

    def __new__(cls, candidates: Any = None, *args: Any, label: str | None = None, **kwargs: Any) -> Any:
        sample = current_sample()
        if sample is None:
            return super().__new__(cls)
        label = auto_label(label)
        modules = _candidate_dict(candidates, label)
        choice = Categorical(_keys(candidates, modules), label=label)
        return modules[str(choice.freeze(sample))]

    def __init__(self, candidates: Any, *, weights: Sequence[float] | None = None, label: str | None = None,
                 prior: Sequence[float] | None = None) -> None:
        super().__init__()
        weights = _legacy_weights(weights, prior, "LayerChoice")
        label = auto_label(label)
        modules = _candidate_dict(candidates, label)
        for name, module in modules.items():
            self.add_module(name, module)
        self.choice = self.add_mutable(Categorical(_keys(candidates, modules), weights=weights, label=label))

    @property
    def label(self) -> str:
        return self.choice.label

    @property
    def names(self) -> list[Any]:
        """What a sample may pick: indices for a list of candidates, keys for a dict."""
        return list(self.choice.values)

    @property
    def candidates(self) -> list[nn.Module] | dict[str, nn.Module]:
        """The candidates as given: a list, or a dict for named candidates."""
        if all(isinstance(name, int) for name in self.names):
            return list(self)
        return {str(name): self[name] for name in self.names}

    def _name(self, name: Any) -> str:
        if index_of(self.names, name) < 0:
            raise KeyError(f"{name!r} is not found in {self.names!r} (the candidates of LayerChoice {self.label!r}).")
        return str(name)

    def __getitem__(self, name: Any) -> nn.Module:
        return self._modules[self._name(name)]  # type: ignore[return-value]

    def __setitem__(self, name: Any, module: nn.Module) -> None:
        if index_of(self.names, name) < 0:
            raise KeyError(f"{name!r} is not found in {self.names!r}. Note we disallow adding new choices to "
                           f"LayerChoice {self.label!r}: give every candidate when building it.")
        if not isinstance(module, nn.Module):
            raise TypeError(f"LayerChoice {self.label!r}: candidate {name!r} must be an nn.Module, got {module!r}.")
        self.add_module(str(name), module)

    def __delitem__(self, name: Any) -> None:
        raise RuntimeError(f"Deleting choices from LayerChoice is not supported ({self.label!r}); build it without "
                           "the candidate instead.")

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[nn.Module]:
        return (self._modules[str(name)] for name in self.names)  # type: ignore[misc]

    def chosen(self, sample: Sample) -> nn.Module:
        return self[self.choice.freeze(sample)]

    def check_contains(self, sample: Sample) -> Any:
        err = self.choice.check_contains(sample)
        if err is not None:
            return err
        picked = self.choice.freeze(sample)
        err = check_module_contains(self[picked], sample)
        if err is not None:
            err.paths.append(str(picked))
        return err

    def freeze_shallow(self, sample: Sample) -> nn.Module:
        return freeze_module(self.chosen(sample), sample)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """In the space (not frozen) the default candidate runs, so the space itself is runnable."""
        return self[self.choice.default()](*args, **kwargs)

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


def _keys(candidates: Any, modules: OrderedDict[str, nn.Module]) -> list[Any]:
    return list(modules) if isinstance(candidates, dict) else list(range(len(modules)))


class ChosenInputs(nn.Module):
    """The frozen form of ``InputChoice``: picks fixed inputs (``chosen``, a list) and reduces them."""

    def __init__(self, chosen: int | list[int], reduction: ReductionType) -> None:
        super().__init__()
        self.chosen: list[int] = list(chosen) if isinstance(chosen, (list, tuple)) else [chosen]
        self.reduction = reduction

    def forward(self, candidate_inputs: list[torch.Tensor]) -> Any:
        return reduce_inputs([candidate_inputs[i] for i in self.chosen], self.reduction)

    def extra_repr(self) -> str:
        return f"chosen={self.chosen}, reduction={self.reduction!r}"


def reduce_inputs(tensors: list[torch.Tensor], reduction: ReductionType) -> Any:
    """NNI's reductions: ``'none'`` gives the list itself, even of one tensor."""
    if reduction == "none":
        return list(tensors)
    if not tensors:
        raise ValueError(f"No input was chosen, so reduction {reduction!r} has nothing to reduce.")
    if len(tensors) == 1:
        return tensors[0]
    if reduction == "sum":
        return sum(tensors[1:], tensors[0])
    if reduction == "mean":
        return sum(tensors[1:], tensors[0]) / len(tensors)
    return torch.cat(tensors, dim=1)


class InputChoice(MutableModule):
    """``n_chosen`` of ``n_candidates`` input tensors, combined by ``reduction``.

    As in NNI, the choice is a ``CategoricalMultiple`` and its sample value a list of indices
    (``[1]`` for ``n_chosen=1``; a bare ``1`` is accepted too); ``n_chosen=None`` chooses any number.
    """

    def __new__(cls, n_candidates: int = 0, n_chosen: int | None = 1, reduction: ReductionType = "sum", *,
                weights: Sequence[float] | None = None, label: str | None = None, **kwargs: Any) -> Any:
        sample = current_sample()
        if sample is None:
            return super().__new__(cls)
        choice = _input_mutable(n_candidates, n_chosen, reduction, kwargs.get("prior", weights), auto_label(label))
        return ChosenInputs(choice.freeze(sample), reduction)

    def __init__(self, n_candidates: int, n_chosen: int | None = 1, reduction: ReductionType = "sum", *,
                 weights: Sequence[float] | None = None, label: str | None = None,
                 prior: Sequence[float] | None = None) -> None:
        super().__init__()
        weights = _legacy_weights(weights, prior, "InputChoice")
        self.n_candidates, self.n_chosen, self.reduction = n_candidates, n_chosen, reduction
        self.choice = self.add_mutable(_input_mutable(n_candidates, n_chosen, reduction, weights, auto_label(label)))

    @property
    def label(self) -> str:
        return self.choice.label

    def freeze_shallow(self, sample: Sample) -> nn.Module:
        return ChosenInputs(self.choice.freeze(sample), self.reduction)

    def forward(self, candidate_inputs: list[torch.Tensor]) -> Any:
        if len(candidate_inputs) != self.n_candidates:
            raise ValueError(
                f"InputChoice {self.label!r} expects {self.n_candidates} candidate inputs, got {len(candidate_inputs)}."
            )
        return ChosenInputs(self.choice.default(), self.reduction)(candidate_inputs)

    def extra_repr(self) -> str:
        return (f"n_candidates={self.n_candidates}, n_chosen={self.n_chosen}, reduction={self.reduction!r}, "
                f"label={self.label!r}")


def _input_mutable(n_candidates: Any, n_chosen: Any, reduction: str, weights: Any, label: str) -> Any:
    where = f"InputChoice {label!r}"
    require_plain(n_candidates, "n_candidates", where)
    require_plain(n_chosen, "n_chosen", where)
    if not isinstance(n_candidates, int) or n_candidates < 1:
        raise ValueError(f"{where}: n_candidates must be a positive integer, got {n_candidates!r}.")
    if n_chosen is not None and not 1 <= n_chosen <= n_candidates:
        raise ValueError(
            f"{where}: n_chosen={n_chosen} is larger than n_candidates={n_candidates} (or below 1); "
            "choose at most as many inputs as there are candidates."
        )
    if reduction not in ("mean", "concat", "sum", "none"):
        raise ValueError(f"{where}: reduction must be one of 'mean', 'concat', 'sum', 'none', got {reduction!r}.")
    return CategoricalMultiple(list(range(n_candidates)), n_chosen=n_chosen, weights=weights, label=label)


class ValueChoice(Categorical):
    """NNI 2.x's name for a value choice, kept for old code: use ``nasflow.choice`` (a ``Categorical``)."""

    def __init__(self, candidates: Sequence[Any], *, prior: Sequence[float] | None = None,
                 weights: Sequence[float] | None = None, default: Any = MISSING, label: str | None = None) -> None:
        warnings.warn("ValueChoice is deprecated, please use `nni.choice` instead (nasflow.choice).",
                      DeprecationWarning, stacklevel=2)
        super().__init__(candidates, weights=weights if weights is not None else prior, default=default, label=label)

    @property
    def candidates(self) -> list[Any]:
        return self.values
