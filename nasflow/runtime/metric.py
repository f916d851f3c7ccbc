"""What a valid metric is: the one definition the trial checks at report time and the store re-checks;
and which of two metrics is better (its number, and the direction it improves in). Torch-free, so the
CLI and the dashboard rank stored results without loading the model stack.

A metric is a finite number, or a dict whose ``'default'`` entry is one (the number strategies
compare) and whose other entries are plain JSON. Values are converted where the conversion is exact
(numpy scalars and arrays, tensors, tuples) so what a trial reported is what the store keeps; a value
JSON cannot hold (NaN, infinity, an object) is refused in the trial, naming its key, so that it fails
that trial alone instead of the experiment that records it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["METRIC_DIRECTIONS", "MetricDirection", "MetricValue", "metric_number", "metric_score", "normalize_metric"]

MetricValue = float | dict[str, Any]
MetricDirection = Literal["maximize", "minimize"]  # whether a higher or a lower metric is better
METRIC_DIRECTIONS: tuple[MetricDirection, ...] = ("maximize", "minimize")

_FIX = "report finite numbers, strings, booleans, None, lists or dicts with string keys"


def normalize_metric(value: Any) -> MetricValue:
    """``value`` as plain JSON data: a float, or a dict with a float ``'default'``; else TypeError/ValueError.

    >>> normalize_metric({"default": np.float32(0.5), "per_class": np.array([1, 2])})
    {'default': 0.5, 'per_class': [1, 2]}
    """
    if isinstance(value, Mapping):
        if "default" not in value:
            raise TypeError(f"A dict metric needs a 'default' entry (the number strategies compare), got {value!r}.")
        plain = _plain(value, "metric")
        plain["default"] = _number(value["default"], "metric['default']")
        return plain
    return _number(value, "A metric")


def metric_number(value: Any) -> float | None:
    """The number strategies compare: the value itself, or its ``'default'`` entry."""
    if value is None:
        return None
    return float(value["default"]) if isinstance(value, Mapping) else float(value)


def metric_score(value: Any, direction: MetricDirection = "maximize") -> float | None:
    """The number to maximize: the metric's number, negated when lower is better."""
    number = metric_number(value)
    return None if number is None else (number if direction == "maximize" else -number)


def _number(value: Any, where: str) -> float:
    value = _unwrap(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where} must be a number, got {type(value).__name__}: {value!r}. Report a number, or "
                        "a dict whose 'default' entry is one.")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{where} is {result}; report a finite number (or raise, to mark the trial failed).")
    return result


def _unwrap(value: Any) -> Any:
    """numpy scalars and arrays, and tensors, as Python numbers and lists (their ``tolist``)."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and hasattr(value, "dtype"):
        return tolist()
    return value


def _plain(value: Any, where: str) -> Any:
    """A JSON-safe copy of ``value``; the error names the entry (``metric['acc'][2]``) and the fix."""
    value = _unwrap(value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        result = float(value)
        if not math.isfinite(result):
            raise ValueError(f"{where} is {result}, which JSON cannot hold; {_FIX} (e.g. None for a missing value).")
        return result
    if isinstance(value, Mapping):
        bad = [key for key in value if not isinstance(key, str)]
        if bad:
            raise TypeError(f"{where} has a key {bad[0]!r} that is not a string; {_FIX}.")
        return {key: _plain(entry, f"{where}[{key!r}]") for key, entry in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(entry, f"{where}[{i}]") for i, entry in enumerate(value)]
    raise TypeError(f"{where} is a {type(value).__name__} ({value!r}), which JSON cannot hold; {_FIX}.")
