"""``Budgeted``: an evaluator run under a training budget that ``nasflow.trial_budget()`` reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import nn

from nasflow.mutable import LabeledMutable, Mutable, Sample
from nasflow.mutable.base import IsLeaf
from nasflow.runtime import budget_scope
from nasflow.space.metrics import MetricDirection

from .base import Evaluator

__all__ = ["Budgeted"]


class Budgeted(Evaluator):
    """Runs ``evaluator`` with ``trial_budget()`` set to ``budget``.

    Multi-fidelity strategies put it on each model they submit; it pickles with the model, so the
    budget reaches the trial on any engine and training service. Mutables of the wrapped evaluator
    stay part of the space.
    """

    def __init__(self, evaluator: Any, budget: float) -> None:
        if isinstance(evaluator, Budgeted):
            evaluator = evaluator.evaluator  # a promoted model gets a new budget, not a nested one
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
            raise ValueError(f"Budgeted: the budget must be a positive number, got {budget!r}.")
        self.evaluator, self.budget = evaluator, budget

    @property
    def metric_direction(self) -> MetricDirection:  # type: ignore[override]
        return getattr(self.evaluator, "metric_direction", "maximize")

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterator[LabeledMutable]:
        if isinstance(self.evaluator, Mutable):
            yield from self.evaluator.leaf_mutables(is_leaf)

    def freeze(self, sample: Sample) -> Budgeted:
        inner = self.evaluator.freeze(sample) if isinstance(self.evaluator, Mutable) else self.evaluator
        return Budgeted(inner, self.budget)

    def evaluate(self, model: nn.Module | Any) -> Any:
        with budget_scope(self.budget):
            return self.evaluator.evaluate(model)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Budgeted) and other.budget == self.budget and other.evaluator == self.evaluator

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"Budgeted({self.evaluator!r}, budget={self.budget!r})"
