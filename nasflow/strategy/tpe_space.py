"""How a nasflow search space is asked of an Optuna trial, and how a sample maps back to params.

Categorical -> ``suggest_categorical`` (over the values when they are plain, else their indices);
CategoricalMultiple -> one boolean per value, or (with ``n_chosen``) a categorical over the
combinations; Numerical -> ``suggest_float`` with ``log`` and ``step`` where Optuna can express them,
a normal as a uniform over mu +- 3 sigma, and quantization by rounding where ``step`` cannot be used.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import Trial

from nasflow.mutable import Categorical, CategoricalMultiple, LabeledMutable, Numerical, Sample

from .utils import position, value_leaves

__all__ = ["OptunaSpace", "MAX_COMBINATIONS"]

MAX_COMBINATIONS = 10_000
_PLAIN = (bool, int, float, str, type(None))
_SIGMAS = 3.0


class _Param:
    """One leaf: the Optuna distributions it needs, and the conversions both ways."""

    def __init__(self, leaf: LabeledMutable) -> None:
        self.leaf = leaf

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        raise NotImplementedError

    def suggest(self, trial: Trial) -> Any:
        raise NotImplementedError

    def from_params(self, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    def to_params(self, value: Any) -> dict[str, Any]:
        raise NotImplementedError


class _CategoricalParam(_Param):
    def __init__(self, leaf: Categorical) -> None:
        super().__init__(leaf)
        self.values = list(leaf.values)
        self.plain = all(isinstance(v, _PLAIN) for v in self.values)
        self.choices = list(self.values) if self.plain else list(range(len(self.values)))

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {self.leaf.label: CategoricalDistribution(self.choices)}

    def suggest(self, trial: Trial) -> Any:
        return self._value(trial.suggest_categorical(self.leaf.label, self.choices))

    def _value(self, choice: Any) -> Any:
        return self.values[position(self.values, choice)] if self.plain else self.values[choice]

    def from_params(self, params: dict[str, Any]) -> Any:
        return self._value(params[self.leaf.label])

    def to_params(self, value: Any) -> dict[str, Any]:
        index = position(self.values, value)
        return {self.leaf.label: self.choices[index]}


class _SubsetParam(_Param):
    """Any subset: one boolean per candidate, named ``label/index``."""

    def __init__(self, leaf: CategoricalMultiple) -> None:
        super().__init__(leaf)
        self.values = list(leaf.values)
        self.names = [f"{leaf.label}/{i}" for i in range(len(self.values))]

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {name: CategoricalDistribution([False, True]) for name in self.names}

    def suggest(self, trial: Trial) -> Any:
        pairs = zip(self.names, self.values, strict=True)
        return [v for name, v in pairs if trial.suggest_categorical(name, [False, True])]

    def from_params(self, params: dict[str, Any]) -> Any:
        return [v for name, v in zip(self.names, self.values, strict=True) if params[name]]

    def to_params(self, value: Any) -> dict[str, Any]:
        chosen = {position(self.values, v) for v in value}
        return {name: i in chosen for i, name in enumerate(self.names)}


class _CombinationParam(_Param):
    """Exactly ``n_chosen`` candidates: one categorical over the combinations (by index)."""

    def __init__(self, leaf: CategoricalMultiple) -> None:
        super().__init__(leaf)
        self.values = list(leaf.values)
        count = math.comb(len(self.values), leaf.n_chosen or 0)
        if count > MAX_COMBINATIONS:
            raise ValueError(
                f"TPE: CategoricalMultiple {leaf.label!r} has {count} combinations of n_chosen={leaf.n_chosen} "
                f"(more than {MAX_COMBINATIONS}), too many for one categorical. Use n_chosen=None (one "
                "yes/no decision per candidate) or split the choice into several smaller ones."
            )
        self.combinations = list(itertools.combinations(range(len(self.values)), leaf.n_chosen or 0))

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {self.leaf.label: CategoricalDistribution(list(range(len(self.combinations))))}

    def suggest(self, trial: Trial) -> Any:
        return self._value(trial.suggest_categorical(self.leaf.label, list(range(len(self.combinations)))))

    def _value(self, index: int) -> list[Any]:
        return [self.values[i] for i in self.combinations[index]]

    def from_params(self, params: dict[str, Any]) -> Any:
        return self._value(params[self.leaf.label])

    def to_params(self, value: Any) -> dict[str, Any]:
        chosen = tuple(sorted(position(self.values, v) for v in value))
        return {self.leaf.label: self.combinations.index(chosen)}


class _NumericalParam(_Param):
    def __init__(self, leaf: Numerical) -> None:
        super().__init__(leaf)
        self.numerical = leaf
        low, high = leaf.low, leaf.high
        if leaf.distribution is not None:  # a scipy distribution: search the bulk of it uniformly
            low, high = max(low, leaf._ppf(0.001)), min(high, leaf._ppf(0.999))
        elif leaf.is_normal:  # TPE has no normal prior: search the bulk of it uniformly (in log space if log-normal)
            lo, hi = leaf.mu - _SIGMAS * leaf.sigma, leaf.mu + _SIGMAS * leaf.sigma  # type: ignore[operator]
            if leaf.log_distributed:
                lo, hi = math.exp(lo), math.exp(hi)
            low, high = max(low, lo), min(high, hi)
        self.step: float | None = None
        q = leaf.quantize
        if q is not None and not leaf.log_distributed:
            q_low, q_high = math.ceil(low / q - 1e-9) * q, math.floor(high / q + 1e-9) * q
            if q_low <= q_high:  # Optuna's step grid starts at low: align it to multiples of q
                low, high, self.step = round(q_low, 10), round(q_high, 10), q
        self.low, self.high = low, high
        self.log = leaf.log_distributed

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {self.leaf.label: FloatDistribution(self.low, self.high, log=self.log, step=self.step)}

    def suggest(self, trial: Trial) -> Any:
        raw = trial.suggest_float(self.leaf.label, self.low, self.high, log=self.log, step=self.step)
        return self._fit(raw)

    def _fit(self, value: float) -> float:
        """The leaf's own rule: round to a multiple of ``quantize``, then clip to [low, high]."""
        return float(self.numerical.qclip(float(value)))

    def from_params(self, params: dict[str, Any]) -> Any:
        return self._fit(params[self.leaf.label])

    def to_params(self, value: Any) -> dict[str, Any]:
        value = min(max(float(value), self.low), self.high)
        if self.step is not None:
            value = round(self.low + round((value - self.low) / self.step) * self.step, 10)
            value = min(value, self.high)
        return {self.leaf.label: value}


def _param(leaf: LabeledMutable) -> _Param:
    if isinstance(leaf, Categorical):
        return _CategoricalParam(leaf)
    if isinstance(leaf, CategoricalMultiple):
        return _SubsetParam(leaf) if leaf.n_chosen is None else _CombinationParam(leaf)
    if isinstance(leaf, Numerical):
        return _NumericalParam(leaf)
    raise TypeError(
        f"TPE cannot search {type(leaf).__name__} {leaf.label!r}: it knows Categorical, CategoricalMultiple "
        "and Numerical. Express the decision with those, or use RegularizedEvolution / Random."
    )


class OptunaSpace:
    """The value-carrying leaves of a space, as Optuna parameters."""

    def __init__(self, leaves: dict[str, LabeledMutable]) -> None:
        self.params = [_param(leaf) for leaf in value_leaves(leaves).values()]

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        out: dict[str, BaseDistribution] = {}
        for param in self.params:
            out.update(param.distributions)
        return out

    def suggest(self, trial: Trial) -> Sample:
        return {param.leaf.label: param.suggest(trial) for param in self.params}

    def sample_of(self, params: dict[str, Any]) -> Sample:
        return {param.leaf.label: param.from_params(params) for param in self.params}

    def params_of(self, sample: Sample) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for param in self.params:
            out.update(param.to_params(sample[param.leaf.label]))
        return out
