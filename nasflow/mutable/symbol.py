"""Leaf mutables: one label, one value in a sample."""

from __future__ import annotations

import itertools
import math
import random as _random
import statistics
from collections.abc import Iterator, Sequence
from typing import Any

from .base import MISSING, LabeledMutable, Sample
from .exception import SampleMissingError, SampleValidationError
from .expression import Symbolic
from .labels import auto_label

__all__ = ["MutableSymbol", "Categorical", "CategoricalMultiple", "Numerical", "index_of"]


class MutableSymbol(Symbolic, LabeledMutable):
    """A leaf: its value is ``sample[label]``. Subclasses say which values are allowed."""

    def freeze(self, sample: Sample) -> Any:
        self.validate(sample)
        return sample[self.label]

    def check_contains(self, sample: Sample) -> SampleValidationError | None:
        if self.label not in sample:
            return SampleMissingError(self.label, list(sample))
        return self._check_value(sample[self.label])

    def _check_value(self, value: Any) -> SampleValidationError | None:
        raise NotImplementedError

    def _draw(self, random_state: _random.Random) -> Any:
        raise NotImplementedError

    def _grid_values(self, granularity: int) -> list[Any]:
        raise NotImplementedError

    def _default_value(self) -> Any:
        raise NotImplementedError

    def default(self, memo: Sample | None = None) -> Any:
        return self._memoize(memo, self._default_value)

    def random(self, memo: Sample | None = None, random_state: _random.Random | None = None) -> Any:
        state = random_state or _random.Random()
        return self._memoize(memo, lambda: self._draw(state))

    def grid(self, memo: Sample | None = None, granularity: int | None = None) -> Iterator[Any]:
        """Every value at ``granularity``; with None, an infinite symbol refines forever, no repeats.

        That matches ``Mutable.grid`` for composites, so a lone ``Numerical`` is not cut short.
        """
        memo = {} if memo is None else memo
        if self.label in memo:
            yield memo[self.label]
            return
        if granularity is not None or self.is_finite():
            levels: Iterator[int] = iter([granularity or 1])
        else:
            levels = itertools.count(1)
        seen: set[Any] = set()
        try:
            for level in levels:
                for value in self._grid_values(level):
                    if granularity is None and not self.is_finite():
                        if value in seen:
                            continue
                        seen.add(value)
                    memo[self.label] = value
                    yield value
        finally:
            memo.pop(self.label, None)

    def _memoize(self, memo: Sample | None, make: Any) -> Any:
        if memo is not None and self.label in memo:
            return memo[self.label]
        value = make()
        if memo is not None:
            memo[self.label] = value
        return value

    def _error(self, message: str) -> SampleValidationError:
        """An error that names the label and says how to fix the sample (not just what is wrong)."""
        return SampleValidationError(
            f"{message} for label {self.label!r}; give {self.label!r} a value that {self!r} allows "
            f"(e.g. space.simplify()[{self.label!r}].default())"
        )


def index_of(values: Sequence[Any], value: Any) -> int:
    """Position of ``value`` in ``values`` (-1 if absent); same-type matches win, so 1 finds 1 before True."""
    for i, v in enumerate(values):
        if type(v) is type(value) and v == value or v is value:
            return i
    for i, v in enumerate(values):  # numbers of another type (2 vs 2.0) still match
        if v == value:
            return i
    return -1


def _check_weights(weights: Sequence[float] | None, n: int, label: str) -> list[float] | None:
    if weights is None:
        return None
    weights = [float(w) for w in weights]
    if len(weights) != n or any(w < 0 for w in weights) or not math.isclose(sum(weights), 1.0, abs_tol=1e-6):
        raise ValueError(f"Weights of {label!r} must be {n} non-negative numbers summing to 1, got {weights}.")
    return weights


class Categorical(MutableSymbol):
    """One value out of ``values`` (optionally weighted)."""

    def __init__(
        self,
        values: Sequence[Any],
        *,
        weights: Sequence[float] | None = None,
        default: Any = MISSING,
        label: str | None = None,
    ) -> None:
        values = list(values)
        self.label = auto_label(label)
        if not values:
            raise ValueError(f"Categorical {self.label!r} has no values; give it at least one.")
        for i, v in enumerate(values):
            if index_of(values[:i], v) >= 0:
                raise ValueError(f"Categorical {self.label!r} lists {v!r} twice; values must be distinct.")
        self.values = values
        self.weights = _check_weights(weights, len(values), self.label)
        if default is not MISSING and index_of(values, default) < 0:
            raise ValueError(f"Default {default!r} of {self.label!r} is not one of its values {values}.")
        self.default_value = default

    def _check_value(self, value: Any) -> SampleValidationError | None:
        if index_of(self.values, value) < 0:
            return self._error(f"{value!r} is not one of {self.values}")
        return None

    def _default_value(self) -> Any:
        return self.values[0] if self.default_value is MISSING else self.default_value

    def _draw(self, random_state: _random.Random) -> Any:
        if self.weights is None:
            return self.values[random_state.randrange(len(self.values))]
        return random_state.choices(self.values, weights=self.weights)[0]

    def _grid_values(self, granularity: int) -> list[Any]:
        return list(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def equals(self, other: Any) -> bool:
        return (
            type(other) is type(self)
            and other.label == self.label
            and other.values == self.values
            and other.weights == self.weights
            and other.default_value == self.default_value
        )

    def __repr__(self) -> str:
        return f"Categorical({self.values!r}, label={self.label!r})"


class CategoricalMultiple(MutableSymbol):
    """A subset of ``values`` (exactly ``n_chosen`` of them when given), as a list in their order."""

    def __init__(
        self,
        values: Sequence[Any],
        *,
        n_chosen: int | None = None,
        weights: Sequence[float] | None = None,
        default: Any = MISSING,
        label: str | None = None,
    ) -> None:
        self.label = auto_label(label)
        self.values = list(values)
        if not self.values:
            raise ValueError(f"CategoricalMultiple {self.label!r} has no values; give it at least one.")
        if n_chosen is not None and not 0 <= n_chosen <= len(self.values):
            raise ValueError(
                f"n_chosen={n_chosen} of {self.label!r} must be between 0 and the number of values "
                f"({len(self.values)}); lower n_chosen or add candidates."
            )
        self.n_chosen = n_chosen
        self.weights = _check_weights(weights, len(self.values), self.label)
        self.default_value = default
        if default is not MISSING and self._check_value(default) is not None:
            raise ValueError(f"Default {default!r} of {self.label!r} is not a valid choice.")

    def _chosen(self, value: Any) -> Any:
        """A bare value stands for ``[value]`` when exactly one is chosen (an index of an InputChoice)."""
        if self.n_chosen == 1 and not isinstance(value, (list, tuple)) and index_of(self.values, value) >= 0:
            return [value]
        return value

    def freeze(self, sample: Sample) -> Any:
        self.validate(sample)
        return self._chosen(sample[self.label])

    def _check_value(self, value: Any) -> SampleValidationError | None:
        value = self._chosen(value)
        if not isinstance(value, (list, tuple)):
            return self._error(f"{value!r} is not a list of chosen values")
        indices = [index_of(self.values, v) for v in value]
        if any(i < 0 for i in indices):
            return self._error(f"{value!r} has values outside {self.values}")
        if len(set(indices)) != len(indices):
            return self._error(f"{value!r} chooses a value twice")
        if self.n_chosen is not None and len(value) != self.n_chosen:
            return self._error(f"{value!r} chooses {len(value)} values, not n_chosen={self.n_chosen}")
        return None

    def _default_value(self) -> Any:
        if self.default_value is not MISSING:
            return list(self.default_value)
        if self.n_chosen is None:
            return list(self.values)
        return self.values[: self.n_chosen]

    def _draw(self, random_state: _random.Random) -> Any:
        n = len(self.values)
        if self.n_chosen is None:
            probs = self.weights or [0.5] * n
            chosen = [i for i in range(n) if random_state.random() < probs[i]]
        elif self.weights is None:
            chosen = sorted(random_state.sample(range(n), self.n_chosen))
        else:
            pool, weights, chosen = list(range(n)), list(self.weights), []
            for _ in range(self.n_chosen):
                pick = random_state.choices(range(len(pool)), weights=weights)[0]
                chosen.append(pool.pop(pick))
                weights.pop(pick)
            chosen.sort()
        return [self.values[i] for i in chosen]

    def _grid_values(self, granularity: int) -> list[Any]:
        sizes = range(len(self.values) + 1) if self.n_chosen is None else [self.n_chosen]
        return [[self.values[i] for i in c] for k in sizes for c in itertools.combinations(range(len(self.values)), k)]

    def equals(self, other: Any) -> bool:
        return (
            type(other) is type(self)
            and other.label == self.label
            and other.values == self.values
            and other.n_chosen == self.n_chosen
            and other.weights == self.weights
        )

    def __repr__(self) -> str:
        return f"CategoricalMultiple({self.values!r}, n_chosen={self.n_chosen}, label={self.label!r})"


class Numerical(MutableSymbol):
    """A number: uniform (or log-uniform) in [low, high], or normal(mu, sigma); optionally quantized."""

    def __init__(
        self,
        low: float = -math.inf,
        high: float = math.inf,
        *,
        mu: float | None = None,
        sigma: float | None = None,
        log_distributed: bool = False,
        quantize: float | None = None,
        default: Any = MISSING,
        label: str | None = None,
    ) -> None:
        self.label = auto_label(label)
        self.low, self.high = float(low), float(high)
        self.mu, self.sigma = mu, sigma
        self.log_distributed = log_distributed
        self.quantize = quantize
        normal = mu is not None or sigma is not None
        if normal and (mu is None or sigma is None or sigma <= 0):
            raise ValueError(f"Numerical {self.label!r}: a normal distribution needs mu and a positive sigma.")
        if not normal and not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"Numerical {self.label!r} needs finite low and high (or mu and sigma).")
        if self.low > self.high:
            raise ValueError(f"Numerical {self.label!r}: low={low} is above high={high}; swap them.")
        if log_distributed and self.low <= 0:
            raise ValueError(f"Numerical {self.label!r}: log_distributed needs low > 0, got {low}.")
        if quantize is not None and quantize <= 0:
            raise ValueError(f"Numerical {self.label!r}: quantize must be positive, got {quantize}.")
        self.default_value = default
        if default is not MISSING and self._check_value(default) is not None:
            raise ValueError(f"Default {default!r} of {self.label!r} is outside [{self.low}, {self.high}].")

    @property
    def is_normal(self) -> bool:
        return self.mu is not None

    def is_finite(self) -> bool:
        return self.quantize is not None and math.isfinite(self.low) and math.isfinite(self.high)

    def _qclip(self, x: float) -> float:
        if self.quantize is not None:
            x = round(x / self.quantize) * self.quantize
            if x < self.low:
                x += self.quantize
            if x > self.high:
                x -= self.quantize
            x = round(x, 10)
        return min(max(x, self.low), self.high)

    def _quantile(self, p: float) -> float:
        if self.is_normal:
            return self._qclip(statistics.NormalDist(self.mu, self.sigma).inv_cdf(p))  # type: ignore[arg-type]
        if self.log_distributed:
            return self._qclip(math.exp(math.log(self.low) + p * (math.log(self.high) - math.log(self.low))))
        return self._qclip(self.low + p * (self.high - self.low))

    def _check_value(self, value: Any) -> SampleValidationError | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return self._error(f"{value!r} is not a number")
        if not self.low <= value <= self.high:
            return self._error(f"{value!r} is outside [{self.low}, {self.high}]")
        if self.quantize is not None:
            steps = value / self.quantize
            if not math.isclose(steps, round(steps), abs_tol=1e-6) and value not in (self.low, self.high):
                return self._error(f"{value!r} is not a multiple of quantize={self.quantize}")
        return None

    def _default_value(self) -> Any:
        return self._quantile(0.5) if self.default_value is MISSING else self.default_value

    def _draw(self, random_state: _random.Random) -> Any:
        if self.is_normal:
            return self._qclip(random_state.gauss(self.mu, self.sigma))  # type: ignore[arg-type]
        return self._quantile(random_state.random())

    def _grid_values(self, granularity: int) -> list[Any]:
        """Every value when quantized and bounded; else quantiles k / 2**granularity (1: the median)."""
        if self.is_finite():
            count = int(math.floor((self.high - self.low) / self.quantize + 1e-9)) + 1  # type: ignore[operator]
            return sorted({self._qclip(self.low + i * self.quantize) for i in range(count)})  # type: ignore[operator]
        parts = 2**granularity
        values: list[float] = []
        for k in range(1, parts):
            v = self._quantile(k / parts)
            if v not in values:
                values.append(v)
        return values

    def equals(self, other: Any) -> bool:
        fields = ("label", "low", "high", "mu", "sigma", "log_distributed", "quantize", "default_value")
        return type(other) is type(self) and all(getattr(self, f) == getattr(other, f) for f in fields)

    def __repr__(self) -> str:
        if self.is_normal:
            body = f"mu={self.mu}, sigma={self.sigma}"
        else:
            body = f"{self.low}, {self.high}" + (", log_distributed=True" if self.log_distributed else "")
        q = f", quantize={self.quantize}" if self.quantize is not None else ""
        return f"Numerical({body}{q}, label={self.label!r})"
