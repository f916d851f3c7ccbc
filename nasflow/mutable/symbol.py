"""Leaf mutables: one label, one value in a sample (NNI's ``Categorical``, ``CategoricalMultiple``, ``Numerical``)."""

from __future__ import annotations

import itertools
import math
import numbers
import statistics
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .base import MISSING, IsLeaf, LabeledMutable, Sample, as_random
from .exception import SampleMissingError, SampleValidationError
from .expression import MutableExpression, Symbolic
from .labels import auto_label, label_scope

__all__ = ["MutableSymbol", "Categorical", "CategoricalMultiple", "Numerical", "InvalidMutableError", "index_of"]


class InvalidMutableError(ValueError, AssertionError):
    """A mutable built with bad arguments. A ``ValueError``; also an ``AssertionError``, which is what
    NNI raised for the same mistakes, so NNI code catching that keeps working."""


class MutableSymbol(LabeledMutable, MutableExpression):
    """A leaf: its value is ``sample[label]``. Subclasses say which values are allowed.

    As in NNI it is also a (trivial) ``MutableExpression``, so it goes wherever an expression does.
    """

    def __init__(self, label: str | None = None) -> None:
        self.label = auto_label(label)

    def freeze(self, sample: Sample) -> Any:
        self.validate(sample)
        return sample[self.label]

    def check_contains(self, sample: Sample) -> SampleValidationError | None:
        if self.label not in sample:
            return SampleMissingError(self.label, list(sample))
        return self._check_value(sample[self.label])

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        return LabeledMutable.leaf_mutables(self, is_leaf)

    def leaf_symbols(self) -> Iterator[Any]:
        yield self

    def evaluate(self, values: Any) -> Any:
        """This symbol's value: ``values[label]`` from a dict, else the next item of an iterator."""
        if isinstance(values, dict):
            if self.label not in values:
                raise KeyError(f"{self.label} is not in {values}")
            return values[self.label]
        try:
            return next(values)
        except StopIteration:
            raise ValueError(f"The value list is exhausted when trying to get a value of {self!r}.") from None

    def symbolic_repr(self, neat: bool = False) -> str:
        return str(self.label) if neat else repr(self)

    def __str__(self) -> str:
        return str(self.label)

    def int(self) -> MutableExpression:
        """This value as an integer, once sampled."""
        return MutableExpression.to_int(self)

    def float(self) -> MutableExpression:
        """This value as a float, once sampled."""
        return MutableExpression.to_float(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    # ---- what subclasses define ----------------------------------------------------------------
    def _check_value(self, value: Any) -> SampleValidationError | None:
        raise NotImplementedError

    def _draw(self, rng: Any) -> Any:
        raise NotImplementedError

    def _grid_values(self, granularity: int) -> list[Any]:
        raise NotImplementedError

    def _default_value(self) -> Any:
        raise NotImplementedError

    # ---- NNI's memo protocol -------------------------------------------------------------------
    def default(self, memo: Sample | None = None) -> Any:
        """The default (the first value unless ``default`` was given); ``memo`` shares it by label.

        A value already in ``memo`` that differs from an explicit default is an error (NNI's rule).
        """
        memo = {} if memo is None else memo
        if self.label not in memo:
            memo[self.label] = self._default_value()
        value = self.freeze(memo)
        explicit = getattr(self, "default_value", MISSING)
        if explicit is not MISSING and value != explicit:
            raise ValueError(f"Default value is specified to be {explicit!r} but got {value!r}. Please check the "
                             f"default value of {self.label!r}: it conflicts with another choice of that label.")
        return value

    def random(self, memo: Sample | None = None, random_state: Any = None) -> Any:
        memo = {} if memo is None else memo
        if self.label not in memo:
            memo[self.label] = self._draw(as_random(random_state))
        return self.freeze(memo)

    def grid(self, memo: Sample | None = None, granularity: int | None = None) -> Iterator[Any]:
        """Every value at ``granularity`` (default 1; only continuous numbers depend on it)."""
        memo = {} if memo is None else memo
        if self.label in memo:
            yield self.freeze(memo)
            return
        if granularity is not None and granularity < 1:
            raise ValueError(f"granularity must be at least 1, got {granularity}.")
        try:
            for value in self._grid_values(granularity or 1):
                memo[self.label] = value
                yield self.freeze(memo)
        finally:
            memo.pop(self.label, None)


def index_of(values: Sequence[Any], value: Any) -> int:
    """Position of ``value`` in ``values`` (-1 if absent); same-type matches win, so 1 finds 1 before True."""
    for i, v in enumerate(values):
        if type(v) is type(value) and _same(v, value) or v is value:
            return i
    for i, v in enumerate(values):  # numbers of another type (2 vs 2.0) still match
        if _same(v, value):
            return i
    return -1


def _plainly_unique(values: list[Any]) -> bool:
    """Ints and strings, all different: unique without ``index_of``'s pairwise scan (a choice is made on
    every build of a model, so its values are checked once per trial)."""
    return all(type(v) is int or type(v) is str for v in values) and len(set(values)) == len(values)


def _float_for_int(expected: Any, value: Any) -> bool:
    """A non-integral number (16.0) standing for an int value (16): equal, but a layer built from it fails."""
    if type(expected) is type(value):  # the usual case, decided without the slower ABC checks
        return False
    return (isinstance(expected, numbers.Integral) and not isinstance(expected, bool)
            and isinstance(value, numbers.Number) and not isinstance(value, numbers.Integral))


def _int_message(value: Any, expected: Any, label: str, values: list[Any]) -> SampleValidationError:
    return SampleValidationError(
        f"{value!r} is a {type(value).__name__}, but the values of {label!r} are integers {_short(values)}: "
        f"give {expected!r} (an int)")


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError, RuntimeError):
        return False


def _check_weights(weights: Sequence[float] | None, n: int, label: str, must_sum: bool = True) -> list[float] | None:
    if weights is None:
        return None
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise InvalidMutableError(f"Distribution must have length n: {label!r} has {n} values but {len(weights)} "
                                  "weights; give one weight per value.")
    if any(w < 0 for w in weights) or (must_sum and not math.isclose(sum(weights), 1.0, abs_tol=1e-6)):
        raise InvalidMutableError(f"Distribution must sum to 1: weights of {label!r} must be {n} non-negative "
                                  f"numbers summing to 1, got {weights}.")
    return weights


def _short(values: list[Any]) -> str:
    if len(values) <= 7:
        return repr(values)
    return "[" + ", ".join(map(repr, values[:3])) + ", ..., " + ", ".join(map(repr, values[-3:])) + "]"


class Categorical(MutableSymbol):
    """One value out of ``values`` (optionally weighted)."""

    def __init__(self, values: Iterable[Any], *, weights: Sequence[float] | None = None, default: Any = MISSING,
                 label: str | None = None) -> None:
        values = list(values)
        self.label = auto_label(label)
        if not values:
            raise InvalidMutableError(f"Categorical values must not be empty ({self.label!r}); give at least one.")
        if any(isinstance(v, Symbolic) for v in values):
            raise InvalidMutableError(f"Categorical values must not contain mutables ({self.label!r}); nested "
                                      "choices are not supported: flatten them into one choice.")
        for i, v in enumerate(values if not _plainly_unique(values) else ()):
            if index_of(values[:i], v) >= 0:
                raise InvalidMutableError(f"Categorical values must be unique, but {v!r} appears twice in "
                                          f"{self.label!r}.")
        self.values = values
        self.weights = _check_weights(weights, len(values), self.label)
        if default is not MISSING and index_of(values, default) < 0:
            raise InvalidMutableError(f"Default {default!r} of {self.label!r} is not one of its values {values}.")
        self.default_value = default

    def _check_value(self, value: Any) -> SampleValidationError | None:
        index = index_of(self.values, value)
        if index < 0:
            return SampleValidationError(
                f"{value!r} not found in {self.values} (label {self.label!r}; give it one of these values)")
        if _float_for_int(self.values[index], value):
            return _int_message(value, self.values[index], self.label, self.values)
        return None

    def _default_value(self) -> Any:
        return self.values[0] if self.default_value is MISSING else self.default_value

    def _draw(self, rng: Any) -> Any:
        if self.weights is None:
            return self.values[rng.randrange(len(self.values))]
        return rng.choices(self.values, weights=self.weights)[0]

    def _grid_values(self, granularity: int) -> list[Any]:
        """Every value; with uneven weights, the most likely first (as NNI orders them)."""
        if self.weights is None or len(set(self.weights)) == 1:
            return list(self.values)
        order = sorted(range(len(self.values)), key=lambda i: -self.weights[i])  # type: ignore[index]
        return [self.values[i] for i in order]

    def __len__(self) -> int:
        return len(self.values)

    def as_legacy_dict(self) -> dict:
        return {"_type": "choice", "_value": list(self.values)}

    def equals(self, other: Any) -> bool:
        return (
            type(other) is type(self)
            and other.label == self.label
            and _same_list(other.values, self.values)
            and (other.weights or _uniform(len(other.values))) == (self.weights or _uniform(len(self.values)))
            and _same(other.default_value, self.default_value)
        )

    def extra_repr(self) -> str:
        return f"{_short(self.values)}, label={self.label!r}"


def _uniform(n: int) -> list[float]:
    return [1 / n] * n


def _same_list(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(type(x) is type(y) and _same(x, y) for x, y in zip(a, b, strict=True))


class CategoricalMultiple(MutableSymbol):
    """A subset of ``values`` (exactly ``n_chosen`` of them when given), as a list in their order.

    Besides the *simple format* ``{label: [v1, v2]}``, a sample may use NNI's *categorical format*:
    one boolean per value, ``{label/0: True, label/1: False, ...}``, which
    ``simplify(is_leaf=...)`` produces for algorithms that only handle single choices.
    """

    def __init__(self, values: Iterable[Any], *, n_chosen: int | None = None, weights: Sequence[float] | None = None,
                 default: Any = MISSING, label: str | None = None) -> None:
        self.label = auto_label(label)
        self.values = list(values)
        if not self.values:
            raise InvalidMutableError(f"CategoricalMultiple {self.label!r} has no values; give it at least one.")
        if any(index_of(self.values[:i], v) >= 0 for i, v in enumerate(self.values)):
            raise InvalidMutableError(f"Values must be unique in {self.label!r}.")
        if n_chosen is not None and not 0 <= n_chosen <= len(self.values):
            raise InvalidMutableError(
                f"n_chosen={n_chosen} of {self.label!r} must be between 1 and n ({len(self.values)}), or None; "
                "lower n_chosen or add candidates."
            )
        self.n_chosen = n_chosen
        self.weights = _check_weights(weights, len(self.values), self.label, must_sum=n_chosen is not None)
        self.default_value = default
        if default is not MISSING and self._check_value(default) is not None:
            raise InvalidMutableError(f"Default {default!r} of {self.label!r} is not a valid choice.")

    def _chosen(self, value: Any) -> Any:
        """A bare value stands for ``[value]`` when exactly one is chosen (an index of an InputChoice)."""
        if self.n_chosen == 1 and not isinstance(value, (list, tuple)) and index_of(self.values, value) >= 0:
            return [value]
        return value

    # ---- the categorical format -----------------------------------------------------------------
    def _categorical_format(self) -> list[LabeledMutable]:
        from .constraint import ExpressionConstraint

        scope = label_scope(_path=self.label.split("/"))
        flags: list[Any] = [Categorical([True, False], label=auto_label(str(i), scope))
                            for i in range(len(self.values))]
        parts: list[LabeledMutable] = list(flags)
        if self.n_chosen is not None:
            parts.append(ExpressionConstraint(sum(flags[1:], flags[0]) == self.n_chosen, label=auto_label("n", scope)))
        return parts

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        if is_leaf is None or is_leaf(self):
            yield self
            return
        for part in self._categorical_format():
            yield from part.leaf_mutables(is_leaf)

    def _from_flags(self, sample: Sample) -> SampleValidationError | list[Any]:
        chosen = []
        for i, part in enumerate(self._categorical_format()):
            err = part.check_contains(sample)
            if err is not None:
                err.paths.insert(0, self.label)
                return err
            if i < len(self.values) and part.freeze(sample):
                chosen.append(self.values[i])
        return chosen

    def check_contains(self, sample: Sample) -> SampleValidationError | None:
        if self.label in sample:
            return self._check_value(sample[self.label])
        if any(key.startswith(f"{self.label}/") for key in sample):
            flags = self._from_flags(sample)
            return flags if isinstance(flags, SampleValidationError) else None
        return SampleMissingError(self.label, list(sample))

    def freeze(self, sample: Sample) -> Any:
        self.validate(sample)
        if self.label in sample:
            return list(self._chosen(sample[self.label]))
        return self._from_flags(sample)

    def _check_value(self, value: Any) -> SampleValidationError | None:
        value = self._chosen(value)
        where = f" (label {self.label!r})"
        if not isinstance(value, (list, tuple)):
            return SampleValidationError(f"{value!r} must be a list of chosen values{where}")
        indices = [index_of(self.values, v) for v in value]
        if len(set(indices)) != len(indices):
            return SampleValidationError(f"{value!r} must not have duplicates{where}")
        if self.n_chosen is not None and len(value) != self.n_chosen:
            return SampleValidationError(f"{value!r} must have length {self.n_chosen}{where}")
        if any(i < 0 for i in indices):
            return SampleValidationError(f"{value!r} must be contained in {self.values}{where}")
        for v, i in zip(value, indices, strict=True):
            if _float_for_int(self.values[i], v):
                return _int_message(v, self.values[i], self.label, self.values)
        return None

    def _default_value(self) -> Any:
        if self.default_value is not MISSING:
            return list(self.default_value)
        return list(self.values) if self.n_chosen is None else self.values[: self.n_chosen]

    def _draw(self, rng: Any) -> Any:
        n = len(self.values)
        if self.n_chosen is None:
            probs = self.weights or [0.5] * n
            chosen = [i for i in range(n) if rng.random() < probs[i]]
        elif self.weights is None:
            chosen = sorted(rng.sample(range(n), self.n_chosen))
        else:
            pool, weights, chosen = list(range(n)), list(self.weights), []
            for _ in range(self.n_chosen):
                pick = rng.choices(range(len(pool)), weights=weights)[0]
                chosen.append(pool.pop(pick))
                weights.pop(pick)
            chosen.sort()
        return [self.values[i] for i in chosen]

    def _grid_values(self, granularity: int) -> list[Any]:
        sizes = range(len(self.values) + 1) if self.n_chosen is None else [self.n_chosen]
        return [list(c) for k in sizes for c in itertools.combinations(self.values, k)]

    def equals(self, other: Any) -> bool:
        return (
            type(other) is type(self)
            and other.label == self.label
            and _same_list(other.values, self.values)
            and other.n_chosen == self.n_chosen
            and other.weights == self.weights
            and _same(other.default_value, self.default_value)
        )

    def extra_repr(self) -> str:
        return f"{_short(self.values)}, n_chosen={self.n_chosen!r}, label={self.label!r}"


class Numerical(MutableSymbol):
    """A number from a distribution: uniform (or log-uniform) in [low, high], normal(mu, sigma) (or
    log-normal, the exponential of a normal, with ``log_distributed=True``), or any scipy frozen
    ``distribution``; values are clipped to [low, high] and, with ``quantize=q``, rounded to multiples
    of q first (NNI: ``clip(round(x / q) * q, low, high)``)."""

    def __init__(
        self,
        low: float = -math.inf,
        high: float = math.inf,
        *,
        mu: float | None = None,
        sigma: float | None = None,
        log_distributed: bool = False,
        quantize: float | None = None,
        distribution: Any = None,
        default: Any = MISSING,
        label: str | None = None,
    ) -> None:
        self.label = auto_label(label)
        if any(isinstance(v, Symbolic) for v in (low, high, mu, sigma)):
            raise InvalidMutableError(f"Numerical parameters must not be mutables ({self.label!r}).")
        self.low, self.high = low, high
        self.mu, self.sigma = mu, sigma
        self.log_distributed = log_distributed
        self.quantize = quantize
        self.distribution = distribution
        normal = mu is not None or sigma is not None
        if distribution is not None:
            if normal or log_distributed:
                raise ValueError("mu, sigma and log_distributed must not be specified if distribution is specified.")
        elif normal:
            if mu is None or sigma is None or sigma <= 0:
                raise InvalidMutableError(f"Numerical {self.label!r}: a normal distribution needs mu and a positive "
                                          "sigma.")
        elif not (math.isfinite(low) and math.isfinite(high)):
            raise InvalidMutableError(f"Numerical {self.label!r} needs finite low and high (or mu and sigma).")
        elif log_distributed and low <= 0:
            raise InvalidMutableError(f"Numerical {self.label!r}: log_distributed needs low > 0, got {low}.")
        if low > high:
            raise InvalidMutableError(f"Numerical {self.label!r}: low={low} is above high={high}; swap them.")
        if quantize is not None and quantize <= 0:
            raise InvalidMutableError(f"Numerical {self.label!r}: quantize must be positive, got {quantize}.")
        self.default_value = default
        if default is not MISSING:
            err = self._check_value(default)
            if err is not None:
                raise InvalidMutableError(f"Default {default!r} of {self.label!r} is invalid: {err.msg}")

    @property
    def is_normal(self) -> bool:
        return self.mu is not None

    def is_finite(self) -> bool:
        """A number's grid depends on the granularity (NNI's rule), so it is never a finite set."""
        return False

    def qclip(self, x: float) -> float:
        """Quantize, then clip to the bounds."""
        if self.quantize is not None:
            x = round(x / self.quantize) * self.quantize
        return min(max(x, self.low), self.high)

    def _ppf(self, p: float) -> float:
        if self.distribution is not None:
            return float(self.distribution.ppf(p))
        if self.is_normal:
            x = statistics.NormalDist(self.mu, self.sigma).inv_cdf(p)  # type: ignore[arg-type]
            return math.exp(x) if self.log_distributed else x
        if self.log_distributed:
            return math.exp(math.log(self.low) + p * (math.log(self.high) - math.log(self.low)))
        return self.low + p * (self.high - self.low)

    def _in_support(self, value: float) -> bool:
        if self.distribution is not None:
            return float(self.distribution.pdf(value)) > 0
        if self.is_normal and self.log_distributed:
            return value > 0
        return True

    def _check_value(self, value: Any) -> SampleValidationError | None:
        where = f" (label {self.label!r})"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return SampleValidationError(f"Value of {self.label} must be a float or int, but got {type(value)}")
        if value < self.low:
            return SampleValidationError(f"{value} is lower than lower bound {self.low}{where}")
        if value > self.high:
            return SampleValidationError(f"{value} is higher than upper bound {self.high}{where}")
        if not self._in_support(value):
            return SampleValidationError(f"{value} is not in the distribution {self!r}")
        q = self.quantize
        if q is not None and abs(value - self.low) > 1e-6 and abs(self.high - value) > 1e-6 \
                and abs(value - round(value / q) * q) > 1e-6:
            return SampleValidationError(f"{value} is not on the boundary and not a multiple of {q}{where}")
        return None

    def _default_value(self) -> Any:
        if self.default_value is not MISSING:
            return self.default_value
        median = float(self.distribution.median()) if self.distribution is not None else self._ppf(0.5)
        return self.qclip(median)

    def _draw(self, rng: Any) -> Any:
        if self.distribution is not None:
            import numpy as np

            return self.qclip(float(self.distribution.rvs(random_state=np.random.RandomState(rng.randrange(2**32)))))
        if self.is_normal:
            x = rng.gauss(self.mu, self.sigma)
            return self.qclip(math.exp(x) if self.log_distributed else x)
        return self.qclip(self._ppf(rng.random()))

    def _grid_values(self, granularity: int) -> list[Any]:
        """Quantiles ``k / 2**granularity`` (granularity 1: the median), quantized and clipped,
        consecutive repeats dropped."""
        values: list[float] = []
        for k in range(1, 2**granularity):
            v = self.qclip(self._ppf(k / 2**granularity))
            if not values or values[-1] != v:
                values.append(v)
        return values

    def as_legacy_dict(self) -> dict:
        if self.distribution is not None:
            raise NotImplementedError("A custom distribution has no legacy dict representation.")
        if self.is_normal:
            kind, value = "normal", [self.mu, self.sigma]
        else:
            kind, value = "uniform", [self.low, self.high]
        if self.log_distributed:
            kind = "log" + kind
        if self.quantize is not None:
            kind, value = "q" + kind, [*value, self.quantize]
        return {"_type": kind, "_value": value}

    def equals(self, other: Any) -> bool:
        fields = ("label", "low", "high", "mu", "sigma", "log_distributed", "quantize")
        if type(other) is not type(self) or not all(getattr(self, f) == getattr(other, f) for f in fields):
            return False
        if not _same(self.default_value, other.default_value):
            return False
        a, b = self.distribution, other.distribution
        if a is None or b is None:
            return a is b
        return type(a.dist) is type(b.dist) and a.args == b.args and a.kwds == b.kwds

    def extra_repr(self) -> str:
        text = f"{self.low}, {self.high}, "
        if self.is_normal:
            text += f"mu={self.mu}, sigma={self.sigma}, "
        if self.quantize is not None:
            text += f"q={self.quantize}, "
        if self.log_distributed:
            text += "log_distributed=True, "
        return text + f"label={self.label!r}"
