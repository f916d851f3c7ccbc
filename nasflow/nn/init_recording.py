"""Record the init arguments of ``torch.nn`` modules (and ``_nni_basic_unit`` modules) built in a space.

The graph format turns every basic unit into one node that says how to construct it again, so it
needs each module's constructor call. Users write plain ``torch.nn.Linear(16, 32)``, not a wrapped
namespace; to learn the arguments anyway, the ``__init__`` of such classes is wrapped once per
process, and while a ``ModelSpace`` is being constructed the outermost init call of each module
stores ``(class, args, kwargs)`` on the instance. Outside a space construction the wrapper only
checks a thread-local counter and calls through, so ordinary torch code is unaffected.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from nasflow.mutable.frozen import frozen_context

__all__ = ["recording_init_args", "recorded_init_args", "is_recording", "install"]

_RECORD_KEY = "_nf_init_record"
_local = threading.local()
_lock = threading.Lock()
_patched: set[type] = set()
_installed = False


def is_recording() -> bool:
    """Whether a model space is being constructed in this thread (so init calls are recorded)."""
    return getattr(_local, "depth", 0) > 0


@contextmanager
def recording_init_args() -> Iterator[None]:
    """Record init arguments of torch.nn and basic-unit modules constructed inside this block."""
    if not is_recording():
        install()
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


def recorded_init_args(module: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """The ``(args, kwargs)`` that constructed ``module``, or None when they were not recorded.

    A record only counts when the recorded init is the one ``type(module)`` runs: a subclass with
    its own ``__init__`` calling ``super().__init__(...)`` with other arguments is not described by it.
    """
    record = module.__dict__.get(_RECORD_KEY)
    if record is None:  # a class that inherits nn.Module's init takes no arguments
        return ((), {}) if type(module).__init__ is nn.Module.__init__ else None
    owner, args, kwargs = record
    if type(module) is not owner and type(module).__init__ is not owner.__dict__.get("__init__"):
        return None
    return args, kwargs


def _should_patch(cls: type) -> bool:
    if cls is nn.Module or "__init__" not in cls.__dict__ or cls in _patched:
        return False
    if getattr(cls.__dict__["__init__"], "_nf_records_init", False):
        return False
    if getattr(cls, "_nf_records_own_init", False):  # ParametrizedModule keeps its own trace_args
        return False
    return cls.__module__.startswith("torch.nn.") or bool(getattr(cls, "_nni_basic_unit", False))


def _patch(cls: type) -> None:
    if _should_patch(cls):
        cls.__init__ = _wrap(cls, cls.__dict__["__init__"])  # type: ignore[misc]
        _patched.add(cls)


def install() -> None:
    """Wrap ``__init__`` of every torch.nn / basic-unit class, once per process: existing classes by
    walking the subclass tree, later ones as they are defined (a hook on ``nn.Module``).

    Runs on the first space construction; the local training service's fork server runs it up
    front, so its workers inherit the wrapped classes instead of each wrapping them again."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        stack, seen = [nn.Module], set()
        while stack:
            for sub in stack.pop().__subclasses__():
                if sub not in seen:
                    seen.add(sub)
                    stack.append(sub)
                    _patch(sub)

        def __init_subclass__(cls: type, **kwargs: Any) -> None:
            super(nn.Module, cls).__init_subclass__(**kwargs)
            with _lock:
                _patch(cls)

        nn.Module.__init_subclass__ = classmethod(__init_subclass__)  # type: ignore[assignment]
        _installed = True


_PLAIN = (type(None), bool, int, float, complex, str, bytes, tuple)
BUILT_KEY = "_nf_built_attributes"  # a module's hyperparameters right after its constructor ran
_BUILT_PARAMETERS_KEY = "_nf_built_parameters"  # its parameters and hooks then (see changed_after_build)


def hyperparameters(module: nn.Module) -> dict[str, Any]:
    """The public plain-valued attributes (``eps``, ``momentum``, ``stride``...) a module holds now."""
    return {k: v for k, v in module.__dict__.items()
            if not k.startswith("_") and k not in ("training", "trace_args", "trace_kwargs") and isinstance(v, _PLAIN)}


def hook_count(module: nn.Module) -> int:
    """The forward and backward hooks registered on ``module`` itself."""
    return (len(module._forward_hooks) + len(module._forward_pre_hooks) + len(module._backward_hooks)
            + len(module._backward_pre_hooks))


def mark_built(module: nn.Module) -> None:
    """Record ``module`` as its constructor left it, when a space is built (a model built from a
    sample is never converted nor frozen again): its hyperparameters, parameters and hooks."""
    if frozen_context.current_model() is not None:
        return
    module.__dict__[BUILT_KEY] = hyperparameters(module)
    module.__dict__[_BUILT_PARAMETERS_KEY] = (_parameter_marks(module), _hooks(module))


def changed_after_build(module: nn.Module) -> list[str]:
    """What was done to a recorded module after its constructor returned that rebuilding it from its
    init arguments would undo: hyperparameters set (``bn.eps = 0.1``), hooks registered, parameters
    replaced, reparametrized or frozen. Parameters only written (an initialization) are not listed:
    see ``written_after_build``."""
    built = module.__dict__.get(BUILT_KEY)
    record = module.__dict__.get(_RECORD_KEY)
    if built is None or (record is not None and not isinstance(module, record[0])):
        return []  # not recorded, or a lazy module that became its materialized class (its own check)
    changes = [f"{k}={v!r}" for k, v in hyperparameters(module).items() if k not in built or built[k] != v]
    marks, hooks = module.__dict__[_BUILT_PARAMETERS_KEY]
    now = _parameter_marks(module)
    for name, (ident, _, requires_grad) in marks.items():
        if name not in now or now[name][0] != ident:
            changes.append(f"its parameter {name!r} was replaced or reparametrized")
        elif now[name][2] != requires_grad:
            changes.append(f"{name}.requires_grad was set to {now[name][2]}")
    changes += [f"{name or 'it'} got a forward or backward hook" for name, n in _hooks(module).items()
                if n > hooks.get(name, 0)]
    return changes


def written_after_build(module: nn.Module) -> bool:
    """Whether a parameter of a recorded module was written in place after its constructor returned
    (a custom initialization, which rebuilding it would not repeat)."""
    record = module.__dict__.get(_BUILT_PARAMETERS_KEY)
    if record is None:
        return False
    now = _parameter_marks(module)
    return any(name in now and now[name][1] != version for name, (_, version, _) in record[0].items())


def _parameter_marks(module: nn.Module) -> dict[str, tuple[int, int, bool]]:
    """Each parameter in ``module``: its identity, its version counter (which every in-place write
    moves, ``nn.init`` included) and ``requires_grad``."""
    return {name: (id(p), p._version, p.requires_grad) for name, p in module.named_parameters()
            if not isinstance(p, nn.parameter.UninitializedParameter)}


def _hooks(module: nn.Module) -> dict[str, int]:
    """The modules in ``module`` that have hooks (by path), and how many."""
    return {name: n for name, m in module.named_modules() if (n := hook_count(m))}


def _wrap(owner: type, init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def wrapper(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        recording = getattr(_local, "depth", 0) > 0 and _RECORD_KEY not in self.__dict__
        if recording:
            self.__dict__[_RECORD_KEY] = (owner, args, kwargs)
        init(self, *args, **kwargs)
        if recording:  # the outermost constructor has returned: the module as built
            mark_built(self)

    wrapper._nf_records_init = True  # type: ignore[attr-defined]
    return wrapper
