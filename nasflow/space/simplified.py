"""Simplified format: a model is its space's constructor call plus a sample (multi-trial default).

Nothing but the sample is stored per model, which keeps thousands of models cheap to hold, and
the model is rebuilt anywhere by running the constructor under ``model_context(sample)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cloudpickle
from torch import nn

from nasflow.mutable import LabeledMutable, Mutable, Sample, dedup_labeled_mutables
from nasflow.mutable.base import IsLeaf
from nasflow.nn.space import ModelSpace, model_context

from .base import ExecutableModelSpace
from .metrics import Metrics, ModelStatus

__all__ = ["SimplifiedModelSpace"]


class _Constructor:
    """The space's class and init arguments, shared by every model of one space."""

    __slots__ = ("cls", "args", "kwargs", "_space", "_labels")

    def __init__(self, cls: type, args: tuple, kwargs: dict, space: ModelSpace | None) -> None:
        self.cls, self.args, self.kwargs, self._space = cls, args, kwargs, space
        self._labels: dict[str, LabeledMutable] | None = None

    def simplify(self) -> dict[str, LabeledMutable]:
        """The space's leaves, computed once (a space does not change after it is built)."""
        if self._labels is None:
            self._labels = self.space.simplify()
        return self._labels

    @property
    def space(self) -> ModelSpace:
        """The space itself, rebuilt on first use where only the constructor travelled."""
        if self._space is None:
            self._space = self.cls(*self.args, **self.kwargs)
        return self._space

    def build(self, sample: Sample) -> nn.Module:
        with model_context(sample):
            return self.cls(*self.args, **self.kwargs)

    def __getstate__(self) -> tuple:
        return self.cls, self.args, self.kwargs

    def __setstate__(self, state: tuple) -> None:
        self.cls, self.args, self.kwargs = state
        self._space, self._labels = None, None


class SimplifiedModelSpace(ExecutableModelSpace):
    """A ``ModelSpace`` by constructor; its frozen models hold only their sample."""

    __slots__ = ("constructor", "evaluator", "sample", "status", "model_id", "_metrics")

    def __init__(self, constructor: _Constructor, evaluator: Any = None, sample: Sample | None = None) -> None:
        self.constructor = constructor
        self.evaluator = evaluator
        self.sample = sample
        self.status = ModelStatus.Initialized if sample is None else ModelStatus.Frozen
        self.model_id: int | None = None
        self._metrics: Metrics | None = None

    @classmethod
    def from_model(cls, model_space: nn.Module, evaluator: Any = None, **kwargs: Any) -> SimplifiedModelSpace:
        if kwargs:
            raise TypeError(f"SimplifiedModelSpace.from_model takes no options, got {sorted(kwargs)}.")
        if not isinstance(model_space, ModelSpace):
            raise TypeError(
                f"The simplified format rebuilds a space from its constructor, so the space must subclass "
                f"nasflow.nn.ModelSpace; {type(model_space).__name__} does not. Subclass ModelSpace, "
                "or use the raw format."
            )
        if model_space.frozen_sample is not None:
            raise ValueError(f"{type(model_space).__name__} is already a frozen model, not a space.")
        args, init_kwargs = model_space.init_args
        constructor = _Constructor(type(model_space), args, init_kwargs, model_space)
        constructor.simplify()  # two different choices under one label: refused now, not at the first trial
        return cls(constructor, evaluator)

    def _space_repr(self) -> str:
        return f"{self.constructor.cls.__name__}(...)"

    @property
    def model_space(self) -> ModelSpace:
        return self.constructor.space

    def _space_leaf_mutables(self, is_leaf: IsLeaf) -> Iterator[LabeledMutable]:
        return self.constructor.space.leaf_mutables(is_leaf)

    def simplify(self, is_leaf: IsLeaf = None) -> dict[str, LabeledMutable]:
        """The space's leaves (computed once) then the evaluator's: every draw and freeze asks, and
        walking the space's modules each time was a large part of a trivial trial."""
        if is_leaf is not None:
            return super().simplify(is_leaf)
        labels = self.constructor.simplify()
        if not isinstance(self.evaluator, Mutable):
            return labels
        return dedup_labeled_mutables([*labels.values(), *self.evaluator.simplify().values()])

    def _freeze_model(self, sample: Sample) -> SimplifiedModelSpace:
        labels = self.simplify()
        return SimplifiedModelSpace(self.constructor, self.frozen_evaluator(sample),
                                    {k: sample[k] for k in labels if k in sample})

    def executable_model(self) -> nn.Module:
        if self.sample is None:
            raise RuntimeError("A space has no single executable model; freeze it with a sample first.")
        return self.constructor.build(self.sample)

    def to_payload(self) -> bytes:
        """Bytes that rebuild this model in another process (class by import path, or by value
        when defined in ``__main__``)."""
        return cloudpickle.dumps(self)

    @staticmethod
    def from_payload(payload: bytes) -> SimplifiedModelSpace:
        model = cloudpickle.loads(payload)
        if not isinstance(model, SimplifiedModelSpace):
            raise TypeError(f"The payload holds a {type(model).__name__}, not a SimplifiedModelSpace.")
        return model

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
