"""Constraints: conditions a sample must meet, checked after its values are drawn."""

from __future__ import annotations

import random as _random
from collections.abc import Iterable, Iterator
from typing import Any

from .base import IsLeaf, LabeledMutable, Sample
from .exception import ConstraintViolation, SampleValidationError
from .expression import MutableExpression
from .labels import auto_label

__all__ = ["Constraint", "ExpressionConstraint"]


class Constraint(LabeledMutable):
    """A labeled check over other mutables. It has no value: freezing it gives None."""

    def check_contains(self, sample: Sample) -> SampleValidationError | None:
        raise NotImplementedError

    def freeze(self, sample: Sample) -> None:
        self.validate(sample)

    def default(self, memo: Sample | None = None) -> None:
        self._check_memo(memo)

    def random(self, memo: Sample | None = None, random_state: _random.Random | None = None) -> None:
        self._check_memo(memo)

    def grid(self, memo: Sample | None = None, granularity: int | None = None) -> Iterator[None]:
        if self.check_contains(memo or {}) is None:
            yield None

    def _check_memo(self, memo: Sample | None) -> None:
        err = self.check_contains(memo or {})
        if err is not None:
            raise err


class ExpressionConstraint(Constraint):
    """Holds when ``expression`` (e.g. ``a + b <= 64``) is true for the sample."""

    def __init__(self, expression: Any, *, label: str | None = None) -> None:
        if not isinstance(expression, MutableExpression):
            raise TypeError(
                f"ExpressionConstraint needs an expression over mutables (e.g. `a + b <= 64`), got {expression!r}."
            )
        self.expression = expression
        self.label = auto_label(label)

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        yield from self.expression.leaf_mutables(is_leaf)
        yield self

    def check_contains(self, sample: Sample) -> SampleValidationError | None:
        for leaf in self.expression.leaf_mutables():
            err = leaf.check_contains(sample)
            if err is not None:
                return err
        if not self.expression.evaluate(sample):
            return ConstraintViolation(f"Constraint {self.label!r} ({self.expression!r}) is violated", [self.label])
        return None

    def equals(self, other: Any) -> bool:
        return isinstance(other, ExpressionConstraint) and other.label == self.label and self.expression.equals(
            other.expression
        )

    def __repr__(self) -> str:
        return f"ExpressionConstraint({self.expression!r}, label={self.label!r})"


