"""Hardware-aware search: a cost table the user measured, and NNI's penalties and filters built on it.

``CostTable({'op1': {'conv3': 1.2, 'conv5': 2.9}, 'width': {16: 0.3, 32: 0.8}}, base=0.5)`` says what
each choice costs (latency in ms, FLOPs, parameters...); an architecture costs ``base`` plus the costs
of its choices (of each chosen input for a multiple input choice). Differentiable strategies penalize
the *expected* cost under the architecture distribution, a differentiable function of the logits
(ProxylessNAS's latency loss); ENAS penalizes its reward by the sampled architecture's cost;
RandomOneShot can skip architectures outside a cost range.

The penalty follows NNI: ``normalized = nonlinear(cost / baseline - 1)``, then
``loss + scale * normalized`` (``aggregate='add'``) or ``loss * (1 + normalized) ** scale`` (``'mul'``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from nasflow.mutable import CategoricalMultiple, LabeledMutable, Sample
from nasflow.mutable.symbol import index_of

from .architecture import UnsupportedChoiceError

__all__ = ["CostTable", "ProfilerPenalty", "ExpectationProfilerPenalty", "SampleProfilerPenalty",
           "ProfilerFilter", "RangeProfilerFilter"]


class CostTable:
    """Per-choice costs (module docstring). A label's costs are a dict ``value -> cost`` or a list
    aligned with its values; labels left out cost nothing."""

    def __init__(self, costs: Mapping[str, Mapping[Any, float] | Sequence[float]], base: float = 0.0) -> None:
        self.costs = dict(costs)
        self.base = float(base)
        self._bound: dict[str, tuple[LabeledMutable, list[float]]] | None = None

    def bind(self, mutables: Mapping[str, LabeledMutable]) -> CostTable:
        """Check the table against a space's ``simplify()`` and align it with the labels' values."""
        bound = {}
        for label, costs in self.costs.items():
            mutable = mutables.get(label)
            if mutable is None or not hasattr(mutable, "values"):
                raise UnsupportedChoiceError(f"CostTable: the space has no categorical choice {label!r}; its labels "
                                             f"are {sorted(mutables)}.")
            values = list(mutable.values)  # type: ignore[attr-defined]
            if isinstance(costs, Mapping):
                aligned = []
                for value in values:
                    found = [cost for key, cost in costs.items() if key == value]
                    if not found:
                        raise UnsupportedChoiceError(f"CostTable: {label!r} has no cost for its value {value!r}.")
                    aligned.append(float(found[0]))
                extra = [key for key in costs if index_of(values, key) < 0]
                if extra:
                    raise UnsupportedChoiceError(f"CostTable: {label!r} has no values {extra}; its values are "
                                                 f"{values}.")
            else:
                aligned = [float(cost) for cost in costs]
                if len(aligned) != len(values):
                    raise UnsupportedChoiceError(f"CostTable: {label!r} has {len(values)} values but {len(aligned)} "
                                                 "costs; give one per value.")
            bound[label] = (mutable, aligned)
        self._bound = bound
        return self

    def _table(self) -> dict[str, tuple[LabeledMutable, list[float]]]:
        if self._bound is None:
            raise RuntimeError("This CostTable is not bound to a space yet; call bind(space.simplify()).")
        return self._bound

    def profile(self, sample: Sample) -> float:
        """The cost of one architecture."""
        total = self.base
        for label, (mutable, costs) in self._table().items():
            value = sample[label]
            chosen = value if isinstance(value, (list, tuple)) else [value]
            total += sum(costs[index_of(mutable.values, v)] for v in chosen)  # type: ignore[attr-defined]
        return total

    def expectation(self, probs: Mapping[str, Mapping[Any, Tensor | float]]) -> Tensor:
        """The expected cost when each label takes its values with ``probs[label]`` (a chosen input of a
        multiple choice counts with its probability of being among the chosen)."""
        total: Tensor = torch.tensor(self.base)
        for label, (mutable, costs) in self._table().items():
            if label not in probs:
                raise KeyError(f"No probabilities for {label!r}; the strategy does not relax it.")
            weights = list(probs[label].values())
            if isinstance(mutable, CategoricalMultiple) and mutable.n_chosen:
                weights = [w * mutable.n_chosen for w in weights]
            for weight, cost in zip(weights, costs, strict=True):
                total = total + weight * cost
        return total


class ProfilerPenalty:
    """``penalty(loss, x) -> (new_loss, details)`` where ``x`` is what ``profile`` measures (docstring above)."""

    def __init__(self, profiler: Any, baseline: float, scale: float = 1.0, *,
                 nonlinear: Literal["linear", "positive", "negative", "absolute"] = "linear",
                 aggregate: Literal["add", "mul"] = "add") -> None:
        if nonlinear not in ("linear", "positive", "negative", "absolute"):
            raise ValueError(f"nonlinear must be 'linear', 'positive', 'negative' or 'absolute', got {nonlinear!r}.")
        if aggregate not in ("add", "mul"):
            raise ValueError(f"aggregate must be 'add' or 'mul', got {aggregate!r}.")
        if not baseline:
            raise ValueError("The penalty's baseline must be a non-zero cost (the target the penalty is relative to).")
        self.profiler, self.baseline, self.scale = profiler, float(baseline), float(scale)
        self.nonlinear, self.aggregate = nonlinear, aggregate

    def profile(self, x: Any) -> Any:
        raise NotImplementedError

    def __call__(self, loss: Any, x: Any) -> tuple[Any, dict[str, Any]]:
        cost = self.profile(x)
        normalized = cost / self.baseline - 1
        if self.nonlinear == "positive":
            normalized = torch.clamp(torch.as_tensor(normalized), min=0)
        elif self.nonlinear == "negative":
            normalized = torch.clamp(torch.as_tensor(normalized), max=0)
        elif self.nonlinear == "absolute":
            normalized = torch.abs(torch.as_tensor(normalized))
        if self.aggregate == "add":
            new = loss + self.scale * normalized
        else:
            new = loss * torch.pow(torch.as_tensor(normalized) + 1, self.scale)
        if not isinstance(loss, Tensor) and isinstance(new, Tensor):
            new = float(new)
        return new, {"loss_original": loss, "penalty": cost, "normalized_penalty": normalized, "loss_final": new}


class ExpectationProfilerPenalty(ProfilerPenalty):
    """Penalize the expected cost under the architecture distribution (DARTS, GumbelDARTS, Proxyless)."""

    def profile(self, x: Mapping[str, Mapping[Any, Tensor]]) -> Tensor:
        if not hasattr(self.profiler, "expectation"):
            raise TypeError(f"{type(self.profiler).__name__} cannot compute an expected cost; use a CostTable.")
        return self.profiler.expectation(x)


class SampleProfilerPenalty(ProfilerPenalty):
    """Penalize the cost of the sampled architecture (ENAS, on the reward: give a negative ``scale``)."""

    def profile(self, x: Sample) -> float:
        return float(self.profiler.profile(x))


class ProfilerFilter:
    """``filter(sample) -> bool`` from a profiler; subclasses say which costs pass."""

    def __init__(self, profiler: Any) -> None:
        self.profiler = profiler

    def filter(self, sample: Sample) -> bool:
        raise NotImplementedError

    def __call__(self, sample: Sample) -> bool:
        return self.filter(sample)


class RangeProfilerFilter(ProfilerFilter):
    """Keep architectures whose cost lies in ``[min, max]`` (either bound may be None, not both)."""

    def __init__(self, profiler: Any, min: float | None = None, max: float | None = None) -> None:  # noqa: A002
        super().__init__(profiler)
        if min is None and max is None:
            raise ValueError("RangeProfilerFilter needs min, max or both.")
        self.min_value, self.max_value = min, max

    def filter(self, sample: Sample) -> bool:
        cost = self.profiler.profile(sample)
        return (self.min_value is None or cost >= self.min_value) and (self.max_value is None or cost <= self.max_value)
