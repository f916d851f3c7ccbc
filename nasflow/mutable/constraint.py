"""Constraints: conditions a sample must meet, checked after its values are drawn."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .base import IsLeaf, LabeledMutable, Mutable, Sample, as_random
from .exception import ConstraintViolation, SampleValidationError
from .expression import MutableExpression
from .labels import auto_label

__all__ = ["MutableAnnotation", "Constraint", "ExpressionConstraint"]


class MutableAnnotation(LabeledMutable):
    """A labeled hint over other mutables that adds no value of its own to a sample (NNI's base of
    constraints); strategies may recognise it with ``isinstance``."""


class Constraint(MutableAnnotation):
    """A labeled check over other mutables. It has no value: freezing it gives None.

    Subclass it with ``leaf_mutables`` (the mutables it reads, then itself) and ``check_contains``;
    NNI-style subclasses that override ``contains`` to return the violation (or None) work too.
    ``default``, ``random`` and ``grid`` sample what the constraint reads, then check it.
    """

    def check_contains(self, sample: Sample) -> SampleValidationError | None:
        if type(self).contains is not Mutable.contains:  # NNI's protocol: contains() returns the error
            result: Any = self.contains(sample)
            if result is None or result is True:
                return None
            if isinstance(result, SampleValidationError):
                return result
            return ConstraintViolation(f"Constraint {self.label!r} is not satisfied.", [self.label])
        raise NotImplementedError(f"{type(self).__name__} must implement check_contains(sample).")

    def freeze(self, sample: Sample) -> None:
        self.validate(sample)

    def _others(self) -> list[LabeledMutable]:
        return [m for m in self.simplify().values() if m is not self]

    def default(self, memo: Sample | None = None) -> None:
        memo = {} if memo is None else memo
        for mutable in self._others():
            mutable.default(memo)
        return self.freeze(memo)

    def random(self, memo: Sample | None = None, random_state: Any = None) -> None:
        memo = {} if memo is None else memo
        rng = as_random(random_state)
        for mutable in self._others():
            mutable.random(memo, rng)
        return self.freeze(memo)

    def grid(self, memo: Sample | None = None, granularity: int | None = None) -> Iterator[None]:
        """The points of what the constraint reads that satisfy it (each yields None)."""
        memo = {} if memo is None else memo
        others = [m for m in self._others() if m.label not in memo]

        def expand(index: int) -> Iterator[None]:
            if index == len(others):
                if self.check_contains(memo) is None:
                    yield None
                return
            for _ in others[index].grid(memo, granularity):
                yield from expand(index + 1)

        yield from expand(0)


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
            return ConstraintViolation(f"{self.expression} is not satisfied (constraint {self.label!r})", [self.label])
        return None

    def equals(self, other: Any) -> bool:
        return isinstance(other, ExpressionConstraint) and other.label == self.label and self.expression.equals(
            other.expression
        )

    def __repr__(self) -> str:
        return f"ExpressionConstraint({self.expression!r}, label={self.label!r})"


