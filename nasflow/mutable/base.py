"""The ``Mutable`` protocol: anything with decisions in it, and how samples flow through it.

A *leaf* mutable (Categorical, Numerical, ...) owns one label and one value in a sample. Every
other mutable (expressions, containers, model-space modules) is made of leaves; its ``freeze``,
``default``, ``random`` and ``grid`` are derived here from its leaves, so subclasses only say what
their leaves are (``leaf_mutables``) and what a sample turns them into (``freeze``).
"""

from __future__ import annotations

import copy
import random as _random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from typing import Any

from .exception import ConstraintViolation, SampleValidationError

__all__ = ["Sample", "Mutable", "LabeledMutable", "MISSING", "dedup_labeled_mutables", "mutable_equal", "as_random"]

Sample = dict[str, Any]
IsLeaf = Callable[["Mutable"], bool] | None

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


def as_random(random_state: Any) -> _random.Random:
    """A ``random.Random`` for ``random_state``: itself, a fresh one for None, or one seeded from a
    numpy ``RandomState`` / ``Generator`` (what NNI code passes), so the same numpy seed gives the
    same draws."""
    if random_state is None:
        return _random.Random()
    if isinstance(random_state, _random.Random):
        return random_state
    if hasattr(random_state, "randint") and hasattr(random_state, "get_state"):  # numpy RandomState
        return _random.Random(int(random_state.randint(0, 2**31 - 1)))
    if hasattr(random_state, "integers"):  # numpy Generator
        return _random.Random(int(random_state.integers(0, 2**31 - 1)))
    if isinstance(random_state, int) and not isinstance(random_state, bool):
        return _random.Random(random_state)
    raise TypeError(f"random_state must be a random.Random, a numpy RandomState / Generator or a seed, "
                    f"got {random_state!r}.")


def _is_labeled(mutable: Mutable) -> bool:
    return isinstance(mutable, LabeledMutable)


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
        return dedup_labeled_mutables(self.leaf_mutables(is_leaf if is_leaf is not None else _is_labeled))

    def equals(self, other: Any) -> bool:
        """Structural equality (``==`` on a mutable builds an expression, as in NNI)."""
        if self is other:
            return True
        if type(self) is not type(other):
            return False
        mine, theirs = _state_of(self), _state_of(other)
        return mine is not None and theirs is not None and mutable_equal(mine, theirs)

    def is_finite(self) -> bool:
        return all(leaf.is_finite() for leaf in self.simplify().values())

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def as_legacy_dict(self) -> dict:
        raise NotImplementedError(f"as_legacy_dict is not implemented for this type of mutable: {type(self)}.")

    def default(self, memo: Sample | None = None) -> Any:
        """The frozen value made of every leaf's default."""
        memo = {} if memo is None else memo
        for leaf in _sampling_order(self.simplify()):
            leaf.default(memo)
        return self.freeze(memo)

    def robust_default(self, memo: Sample | None = None, retries: int = MAX_SAMPLING_RETRIES) -> Any:
        """``default()``, or when that breaks a constraint, ``random()`` until a sample fits."""
        sample: Sample = {} if memo is None else memo
        for attempt in range(retries + 1):
            attempt_sample = copy.copy(sample)
            try:
                value = self.default(attempt_sample) if attempt == 0 else self.random(attempt_sample)
            except SampleValidationError:
                continue
            sample.update(attempt_sample)
            return value
        raise ValueError(f"Cannot find a valid default sample after {retries} retries, for {self!r}. Please either "
                         "set `default` manually, or loosen the constraints.")

    def random(self, memo: Sample | None = None, random_state: Any = None) -> Any:
        """A frozen value drawn at random; draws again while a constraint is violated.

        ``random_state`` is a ``random.Random``, a numpy ``RandomState`` (as NNI takes) or a seed.
        """
        memo = {} if memo is None else memo
        rng = as_random(random_state)
        leaves = _sampling_order(self.simplify())
        for _ in range(MAX_SAMPLING_RETRIES):
            attempt = dict(memo)
            try:
                for leaf in leaves:
                    leaf.random(attempt, rng)
            except ConstraintViolation:
                continue
            memo.update(attempt)
            return self.freeze(memo)
        raise ConstraintViolation(
            f"No sample satisfying the constraints was found in {MAX_SAMPLING_RETRIES} draws. "
            "Loosen the ExpressionConstraints of this space."
        )

    def grid(self, memo: Sample | None = None, granularity: int | None = None) -> Iterator[Any]:
        """Every frozen value of the space's grid, depth first over the leaves.

        ``granularity`` (default 1) sets how finely continuous numbers are split (see ``Numerical``).
        """
        memo = {} if memo is None else memo
        leaves = _sampling_order(self.simplify())

        def expand(index: int) -> Iterator[Any]:
            if index == len(leaves):
                yield self.freeze(memo)
                return
            for _ in leaves[index].grid(memo, granularity):
                yield from expand(index + 1)

        yield from expand(0)


def _state_of(obj: Any) -> dict[str, Any] | None:
    state = getattr(obj, "__dict__", None)
    if state is not None:
        return state
    slots = [name for cls in type(obj).__mro__ for name in getattr(cls, "__slots__", ())]
    return {name: getattr(obj, name) for name in slots if hasattr(obj, name)} if slots else None


class LabeledMutable(Mutable):
    """A mutable with a label of its own, the unit strategies see in ``simplify()``."""

    label: str

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        if is_leaf is None or is_leaf(self):
            yield self
        else:
            raise ValueError(f"is_leaf() should return True for this type of mutable: {type(self).__name__} "
                             f"{self.label!r} cannot be broken down further.")

    def default(self, memo: Sample | None = None) -> Any:
        raise NotImplementedError(f"default() is not implemented for {type(self)}")

    def random(self, memo: Sample | None = None, random_state: Any = None) -> Any:
        raise NotImplementedError(f"random() is not implemented in {type(self)}.")

    def grid(self, memo: Sample | None = None, granularity: int | None = None) -> Iterator[Any]:
        raise NotImplementedError(f"grid() is not implemented in {type(self)}.")

    def is_finite(self) -> bool:
        return True


def _sampling_order(mutables: dict[str, LabeledMutable]) -> list[LabeledMutable]:
    """Value-carrying leaves first, constraints (which only check) last."""
    from .constraint import Constraint

    return sorted(mutables.values(), key=lambda m: isinstance(m, Constraint))


def dedup_labeled_mutables(mutables: Iterable[LabeledMutable]) -> dict[str, LabeledMutable]:
    """``{label: mutable}``; two mutables under one label must be equal (they share the value)."""
    result: dict[str, LabeledMutable] = {}
    for mutable in mutables:
        if not hasattr(mutable, "label"):
            raise ValueError(f"Mutable {mutable!r} does not have a label.")
        existing = result.get(mutable.label)
        if existing is None:
            result[mutable.label] = mutable
        elif existing is not mutable and not existing.equals(mutable):
            raise ValueError(
                f"Mutables have the same label {mutable.label!r} but are different: {existing!r} and {mutable!r}. "
                "Give them distinct labels, or make them identical to share one value."
            )
    return result


def mutable_equal(a: Any, b: Any) -> bool:
    """Equality that compares mutables with ``equals`` (``==`` builds expressions), looking into
    dicts, lists, tuples and sets."""
    if isinstance(a, Mutable) or isinstance(b, Mutable):
        return isinstance(a, Mutable) and isinstance(b, Mutable) and a.equals(b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return len(a) == len(b) and all(k in b and mutable_equal(a[k], b[k]) for k in a)
    if isinstance(a, Sequence) and isinstance(b, Sequence) and not isinstance(a, (str, bytes)):
        if isinstance(b, (str, bytes)) or len(a) != len(b):
            return False
        return all(mutable_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Set):
        if not isinstance(b, Set) or len(a) != len(b):
            return False
        return all(any(mutable_equal(x, y) for y in b) for x in a)
    result = a == b
    if isinstance(result, bool):
        return result
    try:
        return bool(getattr(result, "all", lambda: result)())  # numpy / torch arrays
    except (TypeError, ValueError, RuntimeError):
        return False
