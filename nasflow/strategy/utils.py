"""Small pieces shared by strategies and middlewares."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from nasflow.execution import ExecutionEngine, ModelEvent, ModelEventType
from nasflow.execution.budget import Budget
from nasflow.mutable import Categorical, CategoricalMultiple, Constraint, LabeledMutable, Numerical, Sample
from nasflow.mutable.symbol import index_of

from .append_log import AppendLog

__all__ = [
    "sample_key", "DedupFilter", "value_leaves", "SampleCodec", "EventHooks",
    "check_seed", "check_int", "check_probability", "rng_state", "set_rng_state", "remaining_trials",
]


def sample_key(sample: Sample | None) -> str:
    """A canonical string for a sample, so equal samples compare equal whatever their key order."""
    return json.dumps(sample, sort_keys=True, default=repr)


class DedupFilter:
    """Remembers samples; ``add`` says whether a sample is new."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._order = AppendLog()  # the keys in the order first seen: the state

    def add(self, sample: Sample | None) -> bool:
        return self._add_key(sample_key(sample))

    def _add_key(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        self._order.append(key)
        return True

    def __contains__(self, sample: Sample) -> bool:
        return sample_key(sample) in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def state_dict(self) -> AppendLog:
        """The keys seen, in the order first seen: a list that only grows."""
        return self._order

    def load_state_dict(self, state: list[str]) -> None:
        for key in state:
            self._add_key(key)


def value_leaves(leaves: dict[str, LabeledMutable]) -> dict[str, LabeledMutable]:
    """The leaves that carry a value in a sample (constraints only check, so they are left out)."""
    return {label: leaf for label, leaf in leaves.items() if not isinstance(leaf, Constraint)}


def position(values: Sequence[Any], value: Any) -> int:
    """Index of a sample's value among a leaf's values (a value the leaf lacks is an error)."""
    index = index_of(values, value)
    if index < 0:
        raise ValueError(f"{value!r} is not one of {list(values)}")
    return index


class SampleCodec:
    """Turns samples into JSON-able dicts and back, so strategy state survives ``json.dumps``.

    Choices are stored as indices into their candidates (candidates may be tuples or objects that
    JSON would not give back as they were); numbers as floats; other leaves as they are.
    """

    def __init__(self, leaves: dict[str, LabeledMutable]) -> None:
        self.leaves = value_leaves(leaves)

    def encode(self, sample: Sample) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for label, value in sample.items():
            leaf = self.leaves.get(label)
            if isinstance(leaf, Categorical):
                out[label] = position(leaf.values, value)
            elif isinstance(leaf, CategoricalMultiple):
                out[label] = [position(leaf.values, v) for v in value]
            else:
                out[label] = value
        return out

    def decode(self, encoded: dict[str, Any]) -> Sample:
        out: Sample = {}
        for label, value in encoded.items():
            leaf = self.leaves.get(label)
            if isinstance(leaf, Categorical):
                out[label] = leaf.values[value]
            elif isinstance(leaf, CategoricalMultiple):
                out[label] = [leaf.values[i] for i in value]
            elif isinstance(leaf, Numerical) and isinstance(value, (int, float)):
                out[label] = float(value)
            else:
                out[label] = value
        return out


class EventHooks:
    """Callbacks registered on an engine, removed together when a strategy or middleware is done."""

    def __init__(self) -> None:
        self._registered: list[tuple[ExecutionEngine, ModelEventType, Callable[[ModelEvent], None]]] = []

    def register(self, engine: ExecutionEngine, event_type: ModelEventType,
                 callback: Callable[[ModelEvent], None]) -> None:
        engine.register_model_event_callback(event_type, callback)
        self._registered.append((engine, event_type, callback))

    def clear(self) -> None:
        for engine, event_type, callback in self._registered:
            try:
                engine.unregister_model_event_callback(event_type, callback)
            except ValueError:  # already gone: cleanup must not mask the error that ended a run
                pass
        self._registered.clear()


# ---- argument checks: fail early, name the argument and the fix -------------------------------
def check_seed(owner: str, seed: Any) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"{owner}: seed must be an int or None, got {seed!r}.")
    return seed


def check_int(owner: str, name: str, value: Any, minimum: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        none = " or None" if allow_none else ""
        raise TypeError(f"{owner}: {name} must be an int{none}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be at least {minimum}, got {value}.")
    return value


def check_probability(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{owner}: {name} must be a number in [0, 1], got {value!r}.")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}: {name} must be in [0, 1] (a probability), got {value}.")
    return float(value)


def rng_state(rng: random.Random) -> list[Any]:
    """``random.Random`` state as JSON-able lists."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng: random.Random, state: Any) -> None:
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


def remaining_trials(engine: ExecutionEngine) -> int | None:
    """How many more models the engine (or the first engine below its middlewares that counts them)
    may run; None when no trial limit is set (a duration-only or unlimited budget)."""
    seen: set[int] = set()
    current: Any = engine
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        budget = getattr(current, "budget", None)
        if isinstance(budget, Budget) and budget.max_trials is not None:
            return max(budget.max_trials - budget.total_trials, 0)
        current = getattr(current, "_engine", None)
    return None
