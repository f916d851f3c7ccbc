"""Arithmetic, comparisons and conditions over mutables: ``width = choice([1, 2]) * 16``.

An expression is a tree whose leaves are labeled mutables; freezing it evaluates the tree on the
sample. ``==`` and ``!=`` keep their identity meaning (so mutables stay hashable); use
``MutableExpression.eq`` / ``ne`` to build an equality condition.
"""

from __future__ import annotations

import builtins
import math
import operator
from collections.abc import Callable, Iterable
from typing import Any

from .base import IsLeaf, LabeledMutable, Mutable, Sample

__all__ = ["Symbolic", "MutableExpression"]


# Expressions call named module-level functions (not lambdas), so the graph IR can name them by path.


def logical_and(a: Any, b: Any) -> bool:
    return bool(a) and bool(b)


def logical_or(a: Any, b: Any) -> bool:
    return bool(a) or bool(b)


def round_to(x: Any, ndigits: int | None = None) -> Any:
    return round(x, ndigits)


def choose(pred: Any, true: Any, false: Any) -> Any:
    return true if pred else false


def _freeze_arg(arg: Any, sample: Sample) -> Any:
    return arg.freeze(sample) if isinstance(arg, Mutable) else arg


def _binary(symbol: str, fn: Callable[[Any, Any], Any], reflected: bool = False) -> Callable:
    def method(self: Any, other: Any) -> MutableExpression:
        left, right = (other, self) if reflected else (self, other)
        return MutableExpression(fn, f"({{}} {symbol} {{}})", [left, right])

    return method


def _unary(template: str, fn: Callable[[Any], Any]) -> Callable:
    def method(self: Any) -> MutableExpression:
        return MutableExpression(fn, template, [self])

    return method


class Symbolic:
    """Operators that turn mutables into expressions. Mixed into leaf symbols and expressions."""

    __add__ = _binary("+", operator.add)
    __radd__ = _binary("+", operator.add, reflected=True)
    __sub__ = _binary("-", operator.sub)
    __rsub__ = _binary("-", operator.sub, reflected=True)
    __mul__ = _binary("*", operator.mul)
    __rmul__ = _binary("*", operator.mul, reflected=True)
    __truediv__ = _binary("/", operator.truediv)
    __rtruediv__ = _binary("/", operator.truediv, reflected=True)
    __floordiv__ = _binary("//", operator.floordiv)
    __rfloordiv__ = _binary("//", operator.floordiv, reflected=True)
    __mod__ = _binary("%", operator.mod)
    __rmod__ = _binary("%", operator.mod, reflected=True)
    __pow__ = _binary("**", operator.pow)
    __rpow__ = _binary("**", operator.pow, reflected=True)
    __lt__ = _binary("<", operator.lt)
    __le__ = _binary("<=", operator.le)
    __gt__ = _binary(">", operator.gt)
    __ge__ = _binary(">=", operator.ge)
    __and__ = _binary("&", logical_and)
    __rand__ = _binary("&", logical_and, reflected=True)
    __or__ = _binary("|", logical_or)
    __ror__ = _binary("|", logical_or, reflected=True)
    __neg__ = _unary("-{}", operator.neg)
    __pos__ = _unary("+{}", operator.pos)
    __abs__ = _unary("abs({})", abs)
    __invert__ = _unary("not {}", operator.not_)

    __hash__ = object.__hash__

    def __round__(self, ndigits: int | None = None) -> MutableExpression:
        return MutableExpression(round_to, "round({})", [self, ndigits])

    def __bool__(self) -> bool:
        raise self._not_plain("as a condition; use MutableExpression.condition(...)")  # type: ignore[attr-defined]

    def __index__(self) -> int:
        raise self._not_plain("as an integer")  # type: ignore[attr-defined]

    def __int__(self) -> int:
        raise self._not_plain("in int(); use MutableExpression.to_int(...)")  # type: ignore[attr-defined]

    def __float__(self) -> float:
        raise self._not_plain("in float(); use MutableExpression.to_float(...)")  # type: ignore[attr-defined]


class MutableExpression(Symbolic, Mutable):
    """``function(*arguments)`` where some arguments are mutables; evaluated at freeze time."""

    def __init__(self, function: Callable[..., Any], repr_template: str, arguments: list[Any]) -> None:
        self.function = function
        self.repr_template = repr_template
        self.arguments = list(arguments)

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        for arg in self.arguments:
            if isinstance(arg, Mutable):
                yield from arg.leaf_mutables(is_leaf)

    def freeze(self, sample: Sample) -> Any:
        self.validate(sample)
        return self.evaluate(sample)

    def evaluate(self, sample: Sample) -> Any:
        """The expression's value on ``sample`` without validating it first."""
        args = [a.evaluate(sample) if isinstance(a, MutableExpression) else _freeze_arg(a, sample)
                for a in self.arguments]
        return self.function(*args)

    def equals(self, other: Any) -> bool:
        return (
            isinstance(other, MutableExpression)
            and self.repr_template == other.repr_template
            and len(self.arguments) == len(other.arguments)
            and all(_arg_equals(a, b) for a, b in zip(self.arguments, other.arguments, strict=True))
        )

    def __repr__(self) -> str:
        return self.repr_template.format(*(repr(a) for a in self.arguments))

    # ---- functions that Python does not let us overload -------------------------------------
    @staticmethod
    def max(*args: Any) -> Any:
        return _variadic("max", builtins.max, args)

    @staticmethod
    def min(*args: Any) -> Any:
        return _variadic("min", builtins.min, args)

    @staticmethod
    def condition(pred: Any, true: Any, false: Any) -> Any:
        """``true if pred else false``, deferred until the sample is known."""
        if not any(isinstance(x, Mutable) for x in (pred, true, false)):
            return true if pred else false
        return MutableExpression(choose, "({1} if {0} else {2})", [pred, true, false])

    @staticmethod
    def eq(a: Any, b: Any) -> Any:
        return MutableExpression(operator.eq, "({} == {})", [a, b])

    @staticmethod
    def ne(a: Any, b: Any) -> Any:
        return MutableExpression(operator.ne, "({} != {})", [a, b])

    @staticmethod
    def to_int(x: Any) -> Any:
        return MutableExpression(int, "int({})", [x]) if isinstance(x, Mutable) else int(x)

    @staticmethod
    def to_float(x: Any) -> Any:
        return MutableExpression(float, "float({})", [x]) if isinstance(x, Mutable) else float(x)

    @staticmethod
    def ceil(x: Any) -> Any:
        return MutableExpression(math.ceil, "ceil({})", [x]) if isinstance(x, Mutable) else math.ceil(x)

    @staticmethod
    def floor(x: Any) -> Any:
        return MutableExpression(math.floor, "floor({})", [x]) if isinstance(x, Mutable) else math.floor(x)


def _variadic(name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    if len(args) == 1 and not isinstance(args[0], Mutable):
        args = tuple(args[0])
    if not any(isinstance(a, Mutable) for a in args):
        return fn(*args)
    template = f"{name}(" + ", ".join("{}" for _ in args) + ")"
    return MutableExpression(fn, template, list(args))


def _arg_equals(a: Any, b: Any) -> bool:
    if isinstance(a, Mutable):
        return isinstance(b, Mutable) and a.equals(b)
    return not isinstance(b, Mutable) and a == b
