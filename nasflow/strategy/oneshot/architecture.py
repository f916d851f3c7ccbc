"""``Architecture``: the decisions of one supernet, which its mixed modules read while computing.

A supernet computes in one of three modes, chosen by the strategy before each forward pass:

- *sampled* (``sample`` set): each mixed module runs the path the sample picks, exactly as the frozen
  model of that sample would (RandomOneShot, ENAS, validation of the current best architecture);
- *relaxed* (``sample`` None): each mixed module mixes its candidates, weighted by ``probs(label)``, a
  softmax (or Gumbel softmax) of the label's architecture logits (DARTS, GumbelDARTS);
- *gated* (``sample`` set and ``gates``): the sampled path runs, and the loss reaches the logits through
  ProxylessNAS's binary gates.

Everything is keyed by the labels ``space.simplify()`` returns; nothing here invents a label.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from nasflow.mutable import (
    Categorical,
    CategoricalMultiple,
    Constraint,
    ConstraintViolation,
    LabeledMutable,
    Mutable,
    Sample,
)
from nasflow.mutable.base import MAX_SAMPLING_RETRIES
from nasflow.mutable.symbol import index_of

__all__ = ["Architecture", "LinearTemperatureScheduler", "UnsupportedChoiceError", "choice_size", "plain_sample",
           "value_index"]

WeightFn = Callable[[Tensor], Tensor]


class UnsupportedChoiceError(TypeError):
    """A choice a one-shot strategy cannot search; the message names its label (or module path) and a fix."""


def choice_size(mutable: LabeledMutable) -> int:
    """How many logits a label needs: one per value (per candidate for a multiple choice)."""
    if isinstance(mutable, (Categorical, CategoricalMultiple)):
        return len(mutable.values)
    raise TypeError(f"{mutable!r} is not a categorical choice.")


def plain_sample(sample: Sample) -> dict[str, Any]:
    """``sample`` keyed by plain ``str`` labels, as files that load without unpickling classes need."""
    return {str(label): value for label, value in sample.items()}


def value_index(mutable: Categorical, value: Any) -> int:
    index = index_of(mutable.values, value)
    if index < 0:
        raise ValueError(f"{value!r} is not a value of {mutable.label!r} ({mutable.values}).")
    return index


class Architecture:
    """The mode a supernet computes in, and the architecture logits of its labels.

    ``mutables`` is ``space.simplify()`` of the space the supernet was built from. ``logits`` maps
    labels to parameters (owned and optimized by the strategy); ``weight_fn`` turns logits into
    probabilities (softmax, or Gumbel softmax for GumbelDARTS).
    """

    def __init__(self, mutables: dict[str, LabeledMutable]) -> None:
        self.mutables = dict(mutables)
        self.sample: Sample | None = None
        self.gates = False
        self.logits: dict[str, Tensor] = {}
        self.weight_fn: WeightFn = _softmax
        self._probs: dict[str, Tensor] = {}

    # ---- what mixed modules read ---------------------------------------------------------------
    @property
    def sampled(self) -> bool:
        return self.sample is not None

    def value(self, mutable: Mutable) -> Any:
        """The value ``mutable`` (a leaf or an expression of leaves) takes in the sample in force."""
        if self.sample is None:
            raise RuntimeError("No architecture is sampled; the supernet is in relaxed mode.")
        return mutable.freeze(self.sample)

    def probs(self, label: str) -> Tensor:
        """The label's distribution over its values, computed once per step (one Gumbel draw per label)."""
        probs = self._probs.get(label)
        if probs is None:
            if label not in self.logits:
                raise KeyError(f"Label {label!r} has no architecture logits; the strategy does not relax it.")
            probs = self._probs[label] = self.weight_fn(self.logits[label])
        return probs

    def distribution(self, mutable: Mutable) -> list[tuple[Any, Tensor]]:
        """``[(value, weight)]``: what ``mutable`` evaluates to, with its probability under the relaxation.

        Leaves are independent, so a combination's weight is the product of its leaves'
        probabilities; combinations giving one value (``depth * 2`` of two labels) add up.
        """
        leaves = [leaf for leaf in mutable.simplify().values() if not isinstance(leaf, Constraint)]
        result: list[tuple[Any, Tensor]] = []
        for combo, weight in self.combinations(leaves):
            value = mutable.freeze(combo)
            for i, (known, total) in enumerate(result):
                if known == value:
                    result[i] = (known, total + weight)
                    break
            else:
                result.append((value, weight))
        return result

    def combinations(self, leaves: list[LabeledMutable]) -> Iterator[tuple[Sample, Tensor]]:
        """Every joint value of ``leaves`` with its probability (product of the leaves')."""
        for indices in itertools.product(*(range(len(leaf.values)) for leaf in leaves)):  # type: ignore[attr-defined]
            combo = {leaf.label: leaf.values[i] for leaf, i in zip(leaves, indices, strict=True)}  # type: ignore[attr-defined]
            weight = torch.ones(())
            for leaf, i in zip(leaves, indices, strict=True):
                weight = weight * self.probs(leaf.label)[i]
            yield combo, weight

    # ---- what strategies call ------------------------------------------------------------------
    def refresh(self) -> None:
        """Forget this step's probabilities (logits changed, or a new Gumbel draw is due)."""
        self._probs.clear()

    def use(self, sample: Sample | None, gates: bool = False) -> None:
        """Compute on ``sample`` (None: relaxed) from the next forward pass on."""
        self.sample = dict(sample) if sample is not None else None
        self.gates = gates
        self.refresh()

    def argmax(self) -> Sample:
        """The most likely value of every label (the top ``n_chosen`` candidates of a multiple choice)."""
        sample: Sample = {}
        for label, mutable in self.mutables.items():
            if isinstance(mutable, Constraint):
                continue
            logits = self.logits[label].detach()
            if isinstance(mutable, CategoricalMultiple):
                assert mutable.n_chosen is not None  # refused when the supernet was built
                top = sorted(torch.argsort(logits, descending=True)[: mutable.n_chosen].tolist())
                sample[label] = [mutable.values[i] for i in top]
            else:
                sample[label] = mutable.values[int(torch.argmax(logits))]  # type: ignore[attr-defined]
        return sample

    def draw(self, generator: torch.Generator) -> Sample:
        """A sample drawn from the current probabilities (ProxylessNAS's path sampling)."""
        sample: Sample = {}
        for label, mutable in self.mutables.items():
            if isinstance(mutable, Constraint):
                continue
            probs = self.weight_fn(self.logits[label].detach())
            index = int(torch.multinomial(probs.cpu().float(), 1, generator=generator))
            value = mutable.values[index]  # type: ignore[attr-defined]
            sample[label] = [value] if isinstance(mutable, CategoricalMultiple) else value  # (n_chosen=1)
        return sample

    def uniform(self, rng: random.Random, accept: Callable[[Sample], bool] | None = None) -> Sample:
        """A uniformly random sample that meets the space's constraints (and ``accept``)."""
        leaves = list(self.mutables.values())
        values = [leaf for leaf in leaves if not isinstance(leaf, Constraint)]
        checks = [leaf for leaf in leaves if isinstance(leaf, Constraint)]
        for _ in range(MAX_SAMPLING_RETRIES):
            sample: Sample = {}
            for leaf in values:
                leaf.random(sample, rng)
            if all(check.contains(sample) for check in checks) and (accept is None or accept(sample)):
                return sample
        raise ConstraintViolation(
            f"No architecture meeting the constraints{' and the filter' if accept else ''} was drawn in "
            f"{MAX_SAMPLING_RETRIES} tries; loosen them."
        )

    def probabilities(self) -> dict[str, dict[Any, Tensor]]:
        """``{label: {value: probability}}`` as differentiable tensors (for penalties and logging)."""
        out: dict[str, dict[Any, Tensor]] = {}
        for label, mutable in self.mutables.items():
            if label in self.logits:
                probs = self.probs(label)
                out[label] = {_key(v): probs[i] for i, v in enumerate(mutable.values)}  # type: ignore[attr-defined]
        return out


def _key(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _softmax(logits: Tensor) -> Tensor:
    return torch.softmax(logits, dim=-1)


class LinearTemperatureScheduler:
    """Gumbel-softmax temperature falling linearly from ``init`` (first epoch) to ``min`` (NNI's)."""

    def __init__(self, init: float, min: float) -> None:  # noqa: A002 - NNI's argument name
        if not (isinstance(init, (int, float)) and isinstance(min, (int, float))):
            raise TypeError(f"init and min must be numbers, got {init!r} and {min!r}.")
        if not init >= min >= 0:
            raise ValueError(f"The temperature must fall: init >= min >= 0, got init={init}, min={min}.")
        self.init, self.min = float(init), float(min)

    def step(self, current: int, total: int | None = None) -> float:
        """The temperature of epoch ``current`` (0-based) of ``total``."""
        if total is None or total <= 0:
            if self.init == self.min:
                return self.min
            raise ValueError("An annealed temperature needs the number of epochs: set max_epochs in the evaluator.")
        current = min(current, total)
        return (1 - current / total) * (self.init - self.min) + self.min
