"""``ExecutableModelSpace``: a model space (or one model of it) in a format an engine can run.

The format decides what a frozen model carries (the module itself, a constructor call and a
sample, or a graph); everything else (sampling, status, metrics, evaluation) is shared here.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any

from torch import nn

from nasflow.mutable import LabeledMutable, Mutable, Sample
from nasflow.mutable.base import IsLeaf

from .metrics import METRIC_DIRECTIONS, MetricDirection, Metrics, ModelStatus, metric_score

__all__ = ["ExecutableModelSpace"]


class ExecutableModelSpace(Mutable, abc.ABC):
    """A space in a model format, or (once frozen) one model with its status and metrics.

    ``space.freeze(sample)`` gives a model; ``model.executable_model()`` the torch module;
    ``model.execute()`` runs the evaluator on it (reporting through ``nasflow.report_*``).
    """

    __slots__ = ()

    sample: Sample | None
    evaluator: Any
    status: ModelStatus
    model_id: int | None

    @classmethod
    @abc.abstractmethod
    def from_model(cls, model_space: nn.Module, evaluator: Any = None, **kwargs: Any) -> ExecutableModelSpace:
        """Wrap a user's model space in this format."""

    @abc.abstractmethod
    def executable_model(self) -> nn.Module:
        """The torch module of this (frozen) model."""

    @abc.abstractmethod
    def _space_leaf_mutables(self, is_leaf: IsLeaf) -> Iterator[LabeledMutable]:
        """Leaf mutables of the model part (the evaluator's are added by the base)."""

    @abc.abstractmethod
    def _freeze_model(self, sample: Sample) -> ExecutableModelSpace:
        """The frozen model for a validated sample."""

    @property
    def metrics(self) -> Metrics:
        metrics = getattr(self, "_metrics", None)
        if metrics is None:
            metrics = Metrics()
            self._metrics = metrics
        return metrics

    @metrics.setter
    def metrics(self, value: Metrics) -> None:
        self._metrics = value

    @property
    def metric(self) -> float | None:
        """The final metric as a number, None until reported."""
        metrics = getattr(self, "_metrics", None)
        return metrics.value if metrics is not None else None

    @property
    def score(self) -> float | None:
        """The final metric as the number strategies maximize: negated when the evaluator's
        ``metric_direction`` is ``'minimize'``; None until reported."""
        return metric_score(self.metric, self.metric_direction)

    @property
    def metric_direction(self) -> MetricDirection:
        """Whether the evaluator's metric is better higher (``'maximize'``, the default) or lower."""
        direction = getattr(self.evaluator, "metric_direction", "maximize")
        if direction not in METRIC_DIRECTIONS:
            raise ValueError(f"{type(self.evaluator).__name__}.metric_direction must be one of "
                             f"{list(METRIC_DIRECTIONS)}, got {direction!r}.")
        return direction

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterator[LabeledMutable]:
        yield from self._space_leaf_mutables(is_leaf)
        if isinstance(self.evaluator, Mutable):
            yield from self.evaluator.leaf_mutables(is_leaf)

    def freeze(self, sample: Sample) -> ExecutableModelSpace:
        if self.sample is not None:
            raise RuntimeError(f"This model is already frozen (status {self.status.value}, not initialized); freeze "
                               "the space it came from instead.")
        self.validate(sample)
        model = self._freeze_model(sample)
        model.status = ModelStatus.Frozen
        return model

    def check_contains(self, sample: Sample) -> Any:
        """The space's own check (a LayerChoice only checks what it picks), then the evaluator's."""
        err = self._space_check_contains(sample)
        if err is None and isinstance(self.evaluator, Mutable):
            err = self.evaluator.check_contains(sample)
        return err

    def _space_check_contains(self, sample: Sample) -> Any:
        for leaf in self._space_leaf_mutables(None):
            err = leaf.check_contains(sample)
            if err is not None:
                return err
        return None

    def _dump(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no NNI-style dump; nasflow ships models with "
                                  "SimplifiedModelSpace.to_payload() or GraphModelSpace.dump().")

    def frozen_evaluator(self, sample: Sample) -> Any:
        return self.evaluator.freeze(sample) if isinstance(self.evaluator, Mutable) else self.evaluator

    def execute(self) -> None:
        """Evaluate this model in the calling process; results go through ``nasflow.report_*``."""
        if self.evaluator is None:
            raise RuntimeError("This model has no evaluator; pass one to from_model(space, evaluator).")
        self.evaluator.evaluate(self.executable_model())

    def __repr__(self) -> str:
        parts = [f"model_space={self._space_repr()}", f"evaluator={self.evaluator!r}"]
        if self.sample is not None:
            parts += [f"sample={self.sample}", f"metrics={self.metrics!r}"]
        parts.append(f"status=ModelStatus.{self.status.name}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _space_repr(self) -> str:
        return type(self).__name__
