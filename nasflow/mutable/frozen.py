"""A sample in force while code runs, so a space can be built directly as one frozen model.

``frozen_context`` is a stack: the sample in force is all layers merged (inner wins), and
``frozen_context.update`` adds to the innermost one. ``ensure_frozen`` turns a mutable into a plain
value: the sample's value inside a context; the default while a model space is being built (the
space then records the mutable, so it is searched); anywhere else, an error (``strict=False``: the
default).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .exception import SampleValidationError

__all__ = ["frozen_context", "ensure_frozen", "frozen_factory", "register_ensure_frozen_hook"]

_local = threading.local()
_hooks: list[Callable[[Any], dict[str, Any] | None]] = []


def _stack() -> list[tuple[dict[str, Any], bool] | None]:
    if not hasattr(_local, "samples"):
        _local.samples = []
    return _local.samples


class frozen_context:  # noqa: N801 (NNI's public name)
    """``with frozen_context(sample):`` makes ``ensure_frozen`` resolve mutables to ``sample``'s values.

    ``model=True`` (what ``model_context`` passes) also makes model-space modules built inside
    build the frozen model the sample picks; a plain frozen context is NNI's dry-run context.
    """

    def __init__(self, sample: dict[str, Any] | None = None, *, model: bool = False) -> None:
        if sample is not None and not isinstance(sample, dict):
            raise TypeError(f"A frozen context needs a sample dict ({{label: value}}), got {sample!r}.")
        self.value: dict[str, Any] = dict(sample) if sample is not None else {}
        self.model = model

    @property
    def sample(self) -> dict[str, Any]:
        return self.value

    def __enter__(self) -> dict[str, Any]:
        _stack().append((self.value, self.model))
        return frozen_context.current() or {}

    def __exit__(self, *exc: Any) -> None:
        _stack().pop()

    @staticmethod
    def current() -> dict[str, Any] | None:
        """Every layer merged (inner wins), or None outside any context."""
        return _merged(model_only=False)

    @staticmethod
    def current_model() -> dict[str, Any] | None:
        """The merged sample when a model context is in force (a frozen model is being built), else None."""
        return _merged(model_only=True)

    @staticmethod
    def top_context() -> dict[str, Any]:
        stack = _stack()
        if not stack or stack[-1] is None:
            raise RuntimeError("No frozen context is found. Please use frozen_context() to create one.")
        return stack[-1][0]  # type: ignore[index]

    @staticmethod
    def update(sample: dict[str, Any]) -> None:
        """Add ``sample`` to the innermost context."""
        frozen_context.top_context().update(sample)

    @staticmethod
    @contextmanager
    def bypass() -> Iterator[None]:
        """Ignore the contexts in force (to build a search space inside one)."""
        _stack().append(None)
        try:
            yield
        finally:
            _stack().pop()


def _merged(model_only: bool) -> dict[str, Any] | None:
    merged: dict[str, Any] | None = None
    model = False
    for layer in _stack():
        if layer is None:  # bypass(): what is below does not count
            merged, model = None, False
            continue
        merged = {**(merged or {}), **layer[0]}
        model = model or layer[1]
    return merged if model or not model_only else None


def register_ensure_frozen_hook(hook: Callable[[Any], dict[str, Any] | None]) -> Callable[[], None]:
    """Call ``hook(mutable)`` on every mutable passed to ``ensure_frozen`` outside a frozen context.

    The model space under construction uses it to learn about choices made in plain Python; the
    hook may return the space's dry-run sample, which makes one label give one value throughout.
    Returns a function that removes the hook.
    """
    _hooks.append(hook)
    return lambda: _hooks.remove(hook)


def ensure_frozen(mutable: Any, *, strict: bool = True, sample: dict[str, Any] | None = None,
                  retries: int = 1000) -> Any:
    """A plain value for ``mutable``: itself if it is not a mutable, else its value.

    The value comes from ``sample`` or the ``frozen_context`` in force. While a model space is being
    built it is the default, and the space records the mutable so it is searched. Elsewhere there is
    no sample to take it from: ``strict`` raises, ``strict=False`` uses the default (retrying random
    samples up to ``retries`` times when constraints reject it).
    """
    from .base import Mutable

    if not isinstance(mutable, Mutable):
        return mutable
    if sample is None:
        sample = frozen_context.current()
    if sample is not None:
        try:
            return mutable.freeze(sample)
        except SampleValidationError as err:
            raise type(err)(f"ensure_frozen could not resolve {mutable!r} with the sample in force: {err}. In a "
                            "model space, register it with add_mutable() (or build it in __init__); otherwise do "
                            "not call ensure_frozen inside a frozen_context.", err.paths) from err
    if _hooks:
        memos = [memo for memo in (hook(mutable) for hook in list(_hooks)) if memo is not None]
        return mutable.robust_default(memos[0] if memos else None, retries=retries)
    if retries < 0 or strict:
        raise RuntimeError(
            f"No frozen context is found for {mutable!r}. ensure_frozen needs the sample: call it in the __init__ of "
            "a ModelSpace (you are probably calling it in forward, or outside a space), inside "
            "frozen_context(sample), with sample=..., or pass strict=False to take the default."
        )
    return mutable.robust_default(retries=retries)


class frozen_factory:  # noqa: N801 (NNI's public name)
    """``frozen_factory(Space, sample)(*args)`` builds ``Space(*args)`` as the model ``sample`` picks."""

    def __init__(self, callable: Callable[..., Any], sample: dict[str, Any] | frozen_context) -> None:  # noqa: A002
        self.callable = callable
        self.sample = sample if isinstance(sample, frozen_context) else frozen_context(sample)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.sample:
            return self.callable(*args, **kwargs)

    def __repr__(self) -> str:
        return f"frozen_factory(callable={self.callable}, arch={self.sample.value})"
