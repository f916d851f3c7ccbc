"""``trace`` / ``is_traceable`` as documented no-ops, and NNI's ``dump`` / ``load`` refused with the alternative."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["trace", "is_traceable", "dump", "load"]

_traced: weakref.WeakSet[Any] = weakref.WeakSet()


def trace(cls_or_func: Any = None, *, kw_only: bool = True, inheritable: bool = False) -> Any:
    """NNI's ``@nni.trace``: returns the class or function unchanged.

    NNI traced objects to serialize them for its trial processes; nasflow ships a model space by its
    recorded constructor call and evaluators by value, so nothing needs tracing. Usable as
    ``@trace``, ``@trace(kw_only=False)`` or ``trace(SomeClass)``.
    """
    def mark(target: Any) -> Any:
        try:
            _traced.add(target)
        except TypeError:  # not weak-referenceable: still returned unchanged
            pass
        return target

    return mark if cls_or_func is None else mark(cls_or_func)


def is_traceable(obj: Any) -> bool:
    """Whether ``obj`` records how it was built: spaces, parametrized modules and traced evaluator
    objects do (``trace_args`` / ``trace_kwargs``), and so does anything passed to ``trace``."""
    if all(hasattr(obj, name) for name in ("trace_args", "trace_kwargs")):
        return True
    try:
        return obj in _traced or type(obj) in _traced
    except TypeError:
        return False


def _refused(name: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"nni.{name} (NNI's JSON serializer for traced objects) is not part of nasflow: nothing needs it to run "
            "a search. Save a sample with json, a model with torch.save(model.state_dict(), ...), and rebuild a "
            "searched model with space.freeze(sample) or experiment.export_top_models(formatter='instance')."
        )

    refuse.__name__ = name
    return refuse


dump = _refused("dump")
load = _refused("load")
