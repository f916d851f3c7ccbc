"""A sample in force while code runs, so a space can be built directly as one frozen model."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .exception import SampleValidationError

__all__ = ["frozen_context", "ensure_frozen", "register_ensure_frozen_hook"]

_local = threading.local()
_hooks: list[Callable[[Any], None]] = []


def _samples() -> list[dict[str, Any]]:
    if not hasattr(_local, "samples"):
        _local.samples = []
    return _local.samples


class frozen_context:
    """``with frozen_context(sample):`` makes mutables created inside resolve to ``sample``'s values.

    Nested contexts merge, the inner one winning on shared labels.
    """

    def __init__(self, sample: dict[str, Any] | None = None) -> None:
        self.sample = dict(sample or {})

    def __enter__(self) -> dict[str, Any]:
        merged = {**(self.current() or {}), **self.sample}
        _samples().append(merged)
        return merged

    def __exit__(self, *exc: Any) -> None:
        _samples().pop()

    @staticmethod
    def current() -> dict[str, Any] | None:
        stack = _samples()
        return stack[-1] if stack else None

    @staticmethod
    def bypass() -> frozen_context:
        """A context in which no sample is in force (used while building a space)."""
        return _Bypass()


class _Bypass(frozen_context):
    def __enter__(self) -> dict[str, Any]:
        _samples().append(None)  # type: ignore[arg-type]
        return {}


def register_ensure_frozen_hook(hook: Callable[[Any], None]) -> Callable[[], None]:
    """Call ``hook(mutable)`` on every mutable passed to ``ensure_frozen`` outside a frozen context.

    The model space under construction uses it to learn about choices made in plain Python.
    Returns a function that removes the hook.
    """
    _hooks.append(hook)
    return lambda: _hooks.remove(hook)


def ensure_frozen(value: Any) -> Any:
    """A plain value for ``value``: itself if it is not mutable, else its value in the sample.

    Inside ``frozen_context`` the sample decides; otherwise the mutable's default is used and the
    enclosing model space (if any) records the mutable so it is part of the search space.
    """
    from .base import Mutable

    if not isinstance(value, Mutable):
        return value
    sample = frozen_context.current()
    if sample is not None:
        try:
            return value.freeze(sample)
        except SampleValidationError as err:
            raise SampleValidationError(f"ensure_frozen could not resolve {value!r}: {err}") from err
    for hook in list(_hooks):
        hook(value)
    return value.default()
