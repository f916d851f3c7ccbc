"""What a valid metric is: the one definition the trial checks at report time and the store re-checks.

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
from typing import Any

__all__ = ["MetricValue", "normalize_metric"]

MetricValue = float | dict[str, Any]

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
