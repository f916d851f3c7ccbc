"""Raw format: the space object itself, frozen in place so weights are kept (one-shot's format)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from torch import nn

from nasflow.mutable import LabeledMutable, Mutable, Sample
from nasflow.mutable.base import IsLeaf
from nasflow.nn.base import check_module_contains, module_leaf_mutables

from .base import ExecutableModelSpace
from .metrics import ModelStatus

__all__ = ["RawFormatModelSpace"]


class RawFormatModelSpace(ExecutableModelSpace):
    """Holds the torch module; a frozen model is the space frozen in place (weights copied over).

    It cannot leave the process: its weights are the point, and pickling them per trial would
    defeat it. Engines that ship models elsewhere refuse it.
    """

    def __init__(self, model_space: Any, evaluator: Any = None) -> None:
        self.model_space = model_space
        self.evaluator = evaluator
        self.sample: Sample | None = None
        self.status = ModelStatus.Initialized
        self.model_id: int | None = None

    @classmethod
    def from_model(cls, model_space: Any, evaluator: Any = None, **kwargs: Any) -> RawFormatModelSpace:
        if kwargs:
            raise TypeError(f"RawFormatModelSpace.from_model takes no options, got {sorted(kwargs)}.")
        return cls(model_space, evaluator)

    def _space_leaf_mutables(self, is_leaf: IsLeaf) -> Iterator[LabeledMutable]:
        if isinstance(self.model_space, Mutable):
            return iter(self.model_space.leaf_mutables(is_leaf))
        return module_leaf_mutables(self.model_space, is_leaf)

    def _space_check_contains(self, sample: Sample) -> Any:
        if isinstance(self.model_space, Mutable):
            return self.model_space.check_contains(sample)
        return check_module_contains(self.model_space, sample)

    def _space_repr(self) -> str:
        return repr(self.model_space)

    def _freeze_model(self, sample: Sample) -> RawFormatModelSpace:
        if isinstance(self.model_space, Mutable):  # a ModelSpace, or any space that freezes itself
            frozen = self.model_space.freeze(sample)
        else:
            from nasflow.nn.base import freeze_module

            frozen = copy.deepcopy(freeze_module(self.model_space, sample))
        model = RawFormatModelSpace(frozen, self.frozen_evaluator(sample))
        model.sample = dict(sample)
        return model

    def executable_model(self) -> nn.Module:
        return self.model_space

    def __getstate__(self) -> Any:
        raise TypeError(
            "A raw-format model cannot leave this process (its weights live here). Use the simplified "
            "or graph format for engines that run trials elsewhere: NasExperimentConfig(..., 'simplified')."
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> RawFormatModelSpace:
        new = RawFormatModelSpace(copy.deepcopy(self.model_space, memo), copy.deepcopy(self.evaluator, memo))
        new.sample, new.status, new.model_id = copy.deepcopy(self.sample, memo), self.status, self.model_id
        new.metrics = copy.deepcopy(self.metrics, memo)
        return new
