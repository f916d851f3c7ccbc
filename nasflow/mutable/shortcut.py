"""NNI-style shortcuts: ``nasflow.choice``, ``uniform``, ``loguniform``, ``normal`` and friends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .symbol import Categorical, Numerical

__all__ = ["choice", "uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal"]


def choice(label: str, choices: Sequence[Any] | None = None) -> Categorical:
    """One of ``choices``. NNI order: ``choice(label, choices)``; ``choice(choices)`` also works
    (an automatic label), as does ``choice(choices, label)``."""
    if not isinstance(label, str) and isinstance(choices, str):
        label, choices = choices, label
    elif not isinstance(label, str):
        if choices is not None:
            raise TypeError(f"choice(label, choices): the label must be a string, got {label!r}.")
        return Categorical(label)
    if choices is None:
        raise TypeError(f"choice({label!r}) has no candidates; call choice({label!r}, [value1, value2, ...]).")
    return Categorical(choices, label=label)


def uniform(label: str, low: float, high: float) -> Numerical:
    return Numerical(low, high, label=label)


def quniform(label: str, low: float, high: float, quantize: float) -> Numerical:
    return Numerical(low, high, quantize=quantize, label=label)


def loguniform(label: str, low: float, high: float) -> Numerical:
    return Numerical(low, high, log_distributed=True, label=label)


def qloguniform(label: str, low: float, high: float, quantize: float) -> Numerical:
    return Numerical(low, high, log_distributed=True, quantize=quantize, label=label)


def normal(label: str, mu: float, sigma: float) -> Numerical:
    return Numerical(mu=mu, sigma=sigma, label=label)


def qnormal(label: str, mu: float, sigma: float, quantize: float) -> Numerical:
    return Numerical(mu=mu, sigma=sigma, quantize=quantize, label=label)
