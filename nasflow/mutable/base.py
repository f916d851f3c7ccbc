"""The ``Mutable`` protocol: anything with decisions in it, and how samples flow through it.

A *leaf* mutable (Categorical, Numerical, ...) owns one label and one value in a sample. Every
other mutable (expressions, containers, model-space modules) is made of leaves; its ``freeze``,
``default``, ``random`` and ``grid`` are derived here from its leaves, so subclasses only say what
their leaves are (``leaf_mutables``) and what a sample turns them into (``freeze``).
"""

from __future__ import annotations

import itertools
import random as _random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .exception import ConstraintViolation, SampleValidationError

__all__ = ["Sample", "Mutable", "LabeledMutable", "MISSING", "dedup_labeled_mutables"]

Sample = dict[str, Any]
IsLeaf = Callable[["LabeledMutable"], bool] | None

MAX_SAMPLING_RETRIES = 1000


class _Missing:
    """"No value given" (None can be a legitimate default). One object, kept by copy and pickle."""

    def __repr__(self) -> str:
        return "MISSING"

    def __copy__(self) -> _Missing:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Missing:
        return self

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Mutable:
    """Base of everything that can be sampled and frozen."""

    __slots__ = ()

    # ---- what a subclass defines ------------------------------------------------------------
    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        """The labeled mutables this one is made of (``is_leaf`` may stop the descent early)."""
        raise NotImplementedError

    def freeze(self, sample: Sample) -> Any:
        """The concrete object this mutable becomes under ``sample``; raises on a bad sample."""
        raise NotImplementedError

    def check_contains(self, sample: Sample) -> SampleValidationError | None:
        """None when ``sample`` fits this mutable, else the error that says why not."""
        for leaf in self.leaf_mutables():
            err = leaf.check_contains(sample)
            if err is not None:
                return err
        return None

    # ---- derived ----------------------------------------------------------------------------
    def contains(self, sample: Sample) -> bool:
        return self.check_contains(sample) is None

    def validate(self, sample: Sample) -> None:
        err = self.check_contains(sample)
        if err is not None:
            raise err

    def simplify(self, is_leaf: IsLeaf = None) -> dict[str, LabeledMutable]:
        """``{label: leaf}`` for this mutable; two different leaves under one label is an error."""
        return dedup_labeled_mutables(self.leaf_mutables(is_leaf))

    def equals(self, other: Any) -> bool:
        return self is other

    def is_finite(self) -> bool:
        return all(leaf.is_finite() for leaf in self.simplify().values())

    def default(self, memo: Sample | None = None) -> Any:
        """The frozen value made of every leaf's default."""
        memo = {} if memo is None else memo
        for leaf in _sampling_order(self.simplify()):
            leaf.default(memo)
        return self.freeze(memo)

    def random(self, memo: Sample | None = None, random_state: _random.Random | None = None) -> Any:
        """A frozen value drawn at random; draws again while a constraint is violated."""
        memo = {} if memo is None else memo
        random_state = random_state or _random.Random()
        leaves = _sampling_order(self.simplify())
        for _ in range(MAX_SAMPLING_RETRIES):
            attempt = dict(memo)
            try:
                for leaf in leaves:
                    leaf.random(attempt, random_state)
            except ConstraintViolation:
                continue
            memo.update(attempt)
            return self.freeze(memo)
        raise ConstraintViolation(
            f"No sample satisfying the constraints was found in {MAX_SAMPLING_RETRIES} draws. "
            "Loosen the ExpressionConstraints of this space."
        )

    def grid(self, memo: Sample | None = None, granularity: int | None = None) -> Iterator[Any]:
        """Every frozen value of the space, each once.

        Finite spaces are enumerated in full. For infinite ones (continuous ``Numerical``) a grid
        of the given granularity is used; with ``granularity=None`` the granularity grows
        1, 2, 3, ... forever, each round yielding only what earlier rounds did not.
        """
        memo = {} if memo is None else memo
        leaves = _sampling_order(self.simplify())
        if granularity is not None or all(leaf.is_finite() for leaf in leaves):
            yield from self._grid_at(leaves, memo, granularity or 1)
            return
        seen: set[str] = set()
        for level in itertools.count(1):
            for value, key in self._grid_at(leaves, memo, level, with_key=True):
                if key not in seen:
                    seen.add(key)
                    yield value

    def _grid_at(
        self, leaves: list[LabeledMutable], memo: Sample, granularity: int, with_key: bool = False
    ) -> Iterator[Any]:
        labels = [leaf.label for leaf in leaves]

        def expand(index: int) -> Iterator[Any]:
            if index == len(leaves):
                value = self.freeze(memo)
                yield (value, repr([memo.get(k) for k in labels])) if with_key else value
                return
            for _ in leaves[index].grid(memo, granularity):
                yield from expand(index + 1)

        yield from expand(0)

    # ---- a mutable is no plain value --------------------------------------------------------
    def _not_plain(self, usage: str) -> TypeError:
        return TypeError(
            f"{self!r} was used as a plain value ({usage}). A mutable has no value until it is "
            "sampled: pass it to a nasflow.nn Mutable* layer or ParametrizedModule, or call "
            "nasflow.mutable.ensure_frozen() on it."
        )


class LabeledMutable(Mutable):
    """A mutable with a label of its own, the unit strategies see in ``simplify()``."""

    label: str

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        yield self

    def default(self, memo: Sample | None = None) -> Any:
        raise NotImplementedError

    def random(self, memo: Sample | None = None, random_state: _random.Random | None = None) -> Any:
        raise NotImplementedError

    def grid(self, memo: Sample | None = None, granularity: int | None = None) -> Iterator[Any]:
        raise NotImplementedError

    def is_finite(self) -> bool:
        return True


def _sampling_order(mutables: dict[str, LabeledMutable]) -> list[LabeledMutable]:
    """Value-carrying leaves first, constraints (which only check) last."""
    from .constraint import Constraint

    return sorted(mutables.values(), key=lambda m: isinstance(m, Constraint))


def dedup_labeled_mutables(mutables: Iterable[LabeledMutable]) -> dict[str, LabeledMutable]:
    result: dict[str, LabeledMutable] = {}
    for mutable in mutables:
        existing = result.get(mutable.label)
        if existing is None:
            result[mutable.label] = mutable
        elif existing is not mutable and not existing.equals(mutable):
            raise ValueError(
                f"Label {mutable.label!r} is used by two different mutables: {existing!r} and "
                f"{mutable!r}. Give them distinct labels, or make them identical to share one value."
            )
    return result
