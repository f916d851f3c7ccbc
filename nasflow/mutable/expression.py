"""Arithmetic, comparisons, indexing and conditions over mutables: ``width = choice([1, 2]) * 16``.

An expression is a tree whose leaves are labeled mutables; freezing it evaluates the tree on the
sample. As in NNI, every operator builds an expression, ``==`` and ``!=`` included (compare two
mutables with ``a.equals(b)``), and using one where Python needs a plain value (``if``, ``int()``,
``range()``) raises. Mutables stay hashable (by identity).
"""

from __future__ import annotations

import builtins
import math
import operator
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .base import IsLeaf, LabeledMutable, Mutable, Sample, mutable_equal

__all__ = ["Symbolic", "MutableExpression"]


def _binary(symbol: str, fn: Callable[[Any, Any], Any], reflected: bool = False) -> Callable:
    def method(self: Any, other: Any) -> MutableExpression:
        left, right = (other, self) if reflected else (self, other)
        return MutableExpression(fn, f"{{}} {symbol} {{}}", [left, right])

    return method


def _unary(template: str, fn: Callable[[Any], Any]) -> Callable:
    def method(self: Any) -> MutableExpression:
        return MutableExpression(fn, template, [self])

    return method


def _condition(pred: Any, true: Any, false: Any) -> Any:
    return true if pred else false


class Symbolic:
    """Operators that turn mutables into expressions. Mixed into leaf symbols and expressions."""

    __neg__ = _unary("-{}", operator.neg)
    __pos__ = _unary("+{}", operator.pos)
    __invert__ = _unary("~{}", operator.invert)
    __abs__ = _unary("abs({})", builtins.abs)
    __add__ = _binary("+", operator.add)
    __radd__ = _binary("+", operator.add, reflected=True)
    __sub__ = _binary("-", operator.sub)
    __rsub__ = _binary("-", operator.sub, reflected=True)
    __mul__ = _binary("*", operator.mul)
    __rmul__ = _binary("*", operator.mul, reflected=True)
    __matmul__ = _binary("@", operator.matmul)
    __rmatmul__ = _binary("@", operator.matmul, reflected=True)
    __truediv__ = _binary("/", operator.truediv)
    __rtruediv__ = _binary("/", operator.truediv, reflected=True)
    __floordiv__ = _binary("//", operator.floordiv)
    __rfloordiv__ = _binary("//", operator.floordiv, reflected=True)
    __mod__ = _binary("%", operator.mod)
    __rmod__ = _binary("%", operator.mod, reflected=True)
    __lshift__ = _binary("<<", operator.lshift)
    __rlshift__ = _binary("<<", operator.lshift, reflected=True)
    __rshift__ = _binary(">>", operator.rshift)
    __rrshift__ = _binary(">>", operator.rshift, reflected=True)
    __and__ = _binary("&", operator.and_)
    __rand__ = _binary("&", operator.and_, reflected=True)
    __xor__ = _binary("^", operator.xor)
    __rxor__ = _binary("^", operator.xor, reflected=True)
    __or__ = _binary("|", operator.or_)
    __ror__ = _binary("|", operator.or_, reflected=True)
    __lt__ = _binary("<", operator.lt)
    __le__ = _binary("<=", operator.le)
    __gt__ = _binary(">", operator.gt)
    __ge__ = _binary(">=", operator.ge)
    __ne__ = _binary("!=", operator.ne)  # type: ignore[assignment]
    __divmod__ = _binary(",", builtins.divmod)
    __rdivmod__ = _binary(",", builtins.divmod, reflected=True)

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        if self is other:
            return True
        return MutableExpression(operator.eq, "{} == {}", [self, other])

    __hash__ = object.__hash__

    def __pow__(self, other: Any, modulo: Any = None) -> MutableExpression:
        if modulo is not None:
            return MutableExpression(builtins.pow, "pow({}, {}, {})", [self, other, modulo])
        return MutableExpression(operator.pow, "{} ** {}", [self, other])

    def __rpow__(self, other: Any, modulo: Any = None) -> MutableExpression:
        if modulo is not None:
            return MutableExpression(builtins.pow, "pow({}, {}, {})", [other, self, modulo])
        return MutableExpression(operator.pow, "{} ** {}", [other, self])

    def __getitem__(self, key: Any) -> MutableExpression:
        """``choice[0]``: an item of the chosen value (e.g. of a Categorical of tuples or dicts)."""
        return MutableExpression(operator.getitem, "{}[{}]", [self, key])

    def __round__(self, ndigits: Any = None) -> MutableExpression:
        if ndigits is not None:
            return MutableExpression(builtins.round, "round({}, {})", [self, ndigits])
        return MutableExpression(builtins.round, "round({})", [self])

    def __floor__(self) -> MutableExpression:
        return MutableExpression(math.floor, "math.floor({})", [self])

    def __ceil__(self) -> MutableExpression:
        return MutableExpression(math.ceil, "math.ceil({})", [self])

    def __trunc__(self) -> Any:
        raise RuntimeError("Try to use `MutableExpression.to_int()` instead of `math.trunc()` on a mutable: it has no "
                           f"value until it is sampled ({self!r}).")

    def __index__(self) -> Any:
        raise RuntimeError(
            "`__index__` is not allowed on SymbolicExpression, which means you can't use int(), float(), complex(), "
            f"range() on a mutable ({self!r}): it has no value until it is sampled. To cast it, use "
            "`MutableExpression.to_int()` / `to_float()`; to fix one value, use nasflow.mutable.ensure_frozen()."
        )

    def __bool__(self) -> Any:
        raise RuntimeError(
            "Cannot use bool() on SymbolicExpression. That means, using a mutable in an if-clause (or in "
            f"min/max/and/or) is illegal: {self!r} has no value until it is sampled. Use "
            "`MutableExpression.condition(pred, a, b)`, `MutableExpression.max(a, b)` or `min`, which are evaluated "
            "once the sample is known."
        )

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(f"{self!r} cannot be iterated: it has no value until it is sampled. Index it instead "
                        "(`choice[0]`), or use nasflow.mutable.ensure_frozen() for a plain value.")

    # ---- the leaves -----------------------------------------------------------------------------
    def leaf_symbols(self) -> Iterator[Any]:
        """Every leaf symbol in evaluation order, duplicates included."""
        raise NotImplementedError

    def symbolic_repr(self, neat: bool = False) -> str:
        raise NotImplementedError


class MutableExpression(Symbolic, Mutable):
    """``function(*arguments)`` where some arguments are mutables; evaluated at freeze time."""

    def __init__(self, function: Callable[..., Any], repr_template: str, arguments: list[Any]) -> None:
        if not any(isinstance(a, Symbolic) for a in arguments):
            raise ValueError("To construct a symbolic expression, at least one of arguments must be a mutable "
                             f"(got {arguments!r}).")
        self.function = function
        self.repr_template = repr_template
        self.arguments = list(arguments)

    @property
    def expr_cls(self) -> type[MutableExpression]:
        return MutableExpression

    def leaf_symbols(self) -> Iterator[Any]:
        for arg in self.arguments:
            if isinstance(arg, Symbolic):
                yield from arg.leaf_symbols()

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        for arg in self.arguments:
            if isinstance(arg, Mutable):
                yield from arg.leaf_mutables(is_leaf)

    def freeze(self, sample: Sample) -> Any:
        self.validate(sample)
        return self.evaluate(sample)

    def check_contains(self, sample: Sample) -> Any:
        for leaf in self.leaf_mutables():
            err = leaf.check_contains(sample)
            if err is not None:
                err.paths.insert(0, "expression")
                return err
        return None

    def evaluate(self, values: Sample | Iterable[Any]) -> Any:
        """The value with leaves replaced: by label from a dict, or positionally (``leaf_symbols()`` order)
        from a list or iterator. Unlike ``freeze``, the sample is not validated."""
        if not isinstance(values, dict):
            values = iter(values)
        args = [a.evaluate(values) if isinstance(a, Symbolic) else a for a in self.arguments]
        return self.function(*args)

    def equals(self, other: Any) -> bool:
        return (
            type(other) is type(self)
            and self.function is other.function
            and self.repr_template == other.repr_template
            and mutable_equal(self.arguments, other.arguments)
        )

    def symbolic_repr(self, neat: bool = False) -> str:
        parts = []
        for arg in self.arguments:
            if isinstance(arg, MutableExpression) and not isinstance(arg, LabeledMutable):
                parts.append(f"({arg.symbolic_repr(neat)})")
            elif isinstance(arg, Symbolic):
                parts.append(str(arg) if neat else repr(arg))
            else:
                parts.append(str(arg) if neat else repr(arg))
        return self.repr_template.format(*parts)

    def __repr__(self) -> str:
        return self.symbolic_repr()

    def __str__(self) -> str:
        return self.symbolic_repr(neat=True)

    # ---- functions that Python does not let us overload -------------------------------------
    @staticmethod
    def to_int(obj: Any) -> Any:
        """``int(obj)`` once the sample is known (or now, for a plain value)."""
        return MutableExpression(builtins.int, "int({})", [obj]) if isinstance(obj, Symbolic) else int(obj)

    @staticmethod
    def to_float(obj: Any) -> Any:
        """``float(obj)`` once the sample is known (or now, for a plain value)."""
        return MutableExpression(builtins.float, "float({})", [obj]) if isinstance(obj, Symbolic) else float(obj)

    @staticmethod
    def condition(pred: Any, true: Any, false: Any) -> Any:
        """``true if pred else false``, deferred until the sample is known."""
        if not any(isinstance(x, Symbolic) for x in (pred, true, false)):
            return true if pred else false
        return MutableExpression(_condition, "{1} if {0} else {2}", [pred, true, false])

    @staticmethod
    def max(arg0: Any, *args: Any) -> Any:
        """Like ``max``: of an iterable, or of two or more arguments."""
        return _variadic("max", builtins.max, arg0, args)

    @staticmethod
    def min(arg0: Any, *args: Any) -> Any:
        """Like ``min``: of an iterable, or of two or more arguments."""
        return _variadic("min", builtins.min, arg0, args)

    @staticmethod
    def eq(a: Any, b: Any) -> Any:
        """``a == b`` as an expression (same as the ``==`` operator on a mutable)."""
        return MutableExpression(operator.eq, "{} == {}", [a, b])

    @staticmethod
    def ne(a: Any, b: Any) -> Any:
        return MutableExpression(operator.ne, "{} != {}", [a, b])

    @staticmethod
    def ceil(x: Any) -> Any:
        return MutableExpression(math.ceil, "math.ceil({})", [x]) if isinstance(x, Symbolic) else math.ceil(x)

    @staticmethod
    def floor(x: Any) -> Any:
        return MutableExpression(math.floor, "math.floor({})", [x]) if isinstance(x, Symbolic) else math.floor(x)


def _variadic(name: str, fn: Callable[..., Any], arg0: Any, args: tuple[Any, ...]) -> Any:
    if not args:
        if isinstance(arg0, Symbolic) or not isinstance(arg0, Iterable):
            raise TypeError(f"Expect more than one items to compare {name}")
        items = list(arg0)
    else:
        items = [arg0, *args]
    if not any(isinstance(a, Symbolic) for a in items):
        return fn(items)
    return MutableExpression(_variadic_apply(fn), f"{name}(" + ", ".join("{}" for _ in items) + ")", items)


def _max_of(*items: Any) -> Any:
    return builtins.max(items)


def _min_of(*items: Any) -> Any:
    return builtins.min(items)


def _variadic_apply(fn: Callable[..., Any]) -> Callable[..., Any]:
    return _max_of if fn is builtins.max else _min_of
