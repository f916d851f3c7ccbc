"""NNI's shortcuts: ``nasflow.choice``, ``uniform``, ``loguniform``, ``normal``, ``randint`` and friends."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .symbol import Categorical, Numerical

__all__ = ["choice", "uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal", "lognormal",
           "qlognormal", "randint", "RandomInteger"]

_logger = logging.getLogger(__name__)


def _is_module(value: Any) -> bool:
    """A torch module, recognised without importing torch here (this layer does not depend on it)."""
    return any(c.__module__ == "torch.nn.modules.module" and c.__name__ == "Module" for c in type(value).__mro__)


def choice(label: Any, choices: Sequence[Any] | None = None) -> Any:
    """One of ``choices``: a ``Categorical``, or a ``LayerChoice`` when the choices are torch modules.

    NNI's order is ``choice(label, choices)``; ``choice(choices)`` (an automatic label) and
    ``choice(choices, label)`` also work.
    """
    if not isinstance(label, str) and isinstance(choices, str):
        label, choices = choices, label
    elif not isinstance(label, str):
        if choices is not None:
            raise TypeError(f"choice(label, choices): the label must be a string, got {label!r}.")
        label, choices = None, label
    if choices is None:
        raise TypeError(f"choice({label!r}) has no candidates; call choice({label!r}, [value1, value2, ...]).")
    choices = list(choices)
    if choices and all(_is_module(c) for c in choices):
        from nasflow.nn import LayerChoice  # only reached with torch modules, so torch is already loaded

        return LayerChoice(choices, label=label)
    if any(type(c).__module__ == "torch" and type(c).__name__ == "Tensor" for c in choices):
        raise TypeError("Please do not use choice to choose from tensors. If you are using this in forward, use an "
                        "InputChoice built in __init__ instead.")
    return Categorical(choices, label=label)


def _check_range(low: float, high: float) -> None:
    if low >= high:
        raise ValueError(f"low must be strictly smaller than high, got low={low}, high={high}.")


def uniform(label: str, low: float, high: float) -> Numerical:
    """Uniformly sampled in [low, high]."""
    _check_range(low, high)
    return Numerical(low, high, label=label)


def quniform(label: str, low: float, high: float, quantize: float) -> Numerical:
    """``clip(round(uniform(low, high) / q) * q, low, high)``; the value is a float (``.int()`` for an integer)."""
    if isinstance(quantize, int):
        _logger.warning("Though quantize is an integer (%d) in quniform, the returned value will always be float. "
                        "Use `.int()` to convert to integer.", quantize)
    _check_range(low, high)
    return Numerical(low, high, quantize=quantize, label=label)


def loguniform(label: str, low: float, high: float) -> Numerical:
    """``exp(uniform(log(low), log(high)))``; low and high must be positive."""
    _check_range(low, high)
    if low <= 0 or high <= 0:
        raise ValueError(f"low and high must be strictly greater than 0, got low={low}, high={high}.")
    return Numerical(low, high, log_distributed=True, label=label)


def qloguniform(label: str, low: float, high: float, quantize: float) -> Numerical:
    return Numerical(low, high, log_distributed=True, quantize=quantize, label=label)


def normal(label: str, mu: float, sigma: float) -> Numerical:
    """Normal with mean ``mu`` and standard deviation ``sigma`` (unbounded)."""
    if sigma <= 0:
        raise ValueError(f"Standard deviation must be strictly greater than 0, got sigma={sigma}.")
    return Numerical(mu=mu, sigma=sigma, label=label)


def qnormal(label: str, mu: float, sigma: float, quantize: float) -> Numerical:
    return Numerical(mu=mu, sigma=sigma, quantize=quantize, label=label)


def lognormal(label: str, mu: float, sigma: float) -> Numerical:
    """``exp(normal(mu, sigma))``: the logarithm of the value is normally distributed."""
    return Numerical(mu=mu, sigma=sigma, log_distributed=True, label=label)


def qlognormal(label: str, mu: float, sigma: float, quantize: float) -> Numerical:
    return Numerical(mu=mu, sigma=sigma, log_distributed=True, quantize=quantize, label=label)


class RandomInteger(Categorical):
    """An integer in ``[lower, upper)``: a ``Categorical`` over ``range(lower, upper)``."""

    def __init__(self, lower: int, upper: int, label: str | None = None) -> None:
        if not isinstance(lower, int) or not isinstance(upper, int):
            raise TypeError(f"lower and upper must be integers, got {lower!r} and {upper!r}.")
        if lower >= upper:
            raise ValueError(f"lower must be strictly smaller than upper, got {lower} and {upper}.")
        super().__init__(list(range(lower, upper)), label=label)

    def __repr__(self) -> str:
        return f"Categorical({self.extra_repr()})"


def randint(label: str, lower: int, upper: int) -> Categorical:
    """A random integer in ``[lower, upper)`` (upper excluded), as NNI's ``randint``."""
    return RandomInteger(lower, upper, label=label)
