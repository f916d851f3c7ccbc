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
BUILT_KEY = "_nf_built_attributes"  # a module's plain attributes right after its constructor ran
_BUILT_PARAMETERS_KEY = "_nf_built_parameters"  # its parameters and hooks then (see parameter_changes)


def plain_attributes(module: nn.Module) -> dict[str, Any]:
    """The public plain-valued attributes (``eps``, ``momentum``, ``stride``...) a module holds now."""
    return {k: v for k, v in module.__dict__.items()
            if not k.startswith("_") and k not in ("training", "trace_args", "trace_kwargs") and isinstance(v, _PLAIN)}


def changed_after_build(module: nn.Module) -> dict[str, Any]:
    """Plain attributes set on a recorded module after its constructor returned (``bn.eps = 0.1``):
    what rebuilding it from its init arguments would lose."""
    built = module.__dict__.get(BUILT_KEY)
    record = module.__dict__.get(_RECORD_KEY)
    if built is None or (record is not None and not isinstance(module, record[0])):
        return {}  # not recorded, or a lazy module that became its materialized class (its own check)
    return {k: v for k, v in plain_attributes(module).items() if k not in built or built[k] != v}


def mark_built(module: nn.Module) -> None:
    """Record ``module`` as its constructor left it: its plain attributes (``changed_after_build``) and,
    when a space is built (not a model from a sample, which is never converted), its parameters and
    hooks (``parameter_changes``)."""
    module.__dict__[BUILT_KEY] = plain_attributes(module)
    if frozen_context.current_model() is None:
        module.__dict__[_BUILT_PARAMETERS_KEY] = (_parameter_marks(module), _hooks(module))


def _parameter_marks(module: nn.Module) -> dict[str, tuple[int, int, bool]]:
    """Each parameter in ``module``: its identity, its version counter (which every in-place write
    moves, ``nn.init`` included) and ``requires_grad``."""
    return {name: (id(p), p._version, p.requires_grad) for name, p in module.named_parameters()
            if not isinstance(p, nn.parameter.UninitializedParameter)}


def _hooks(module: nn.Module) -> dict[str, int]:
    """How many forward and backward hooks each module in ``module`` has (by path)."""
    counts = {name: len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
              + len(m._backward_pre_hooks) for name, m in module.named_modules()}
    return {name: n for name, n in counts.items() if n}


def parameter_changes(module: nn.Module) -> tuple[list[str], list[str]]:
    """What happened in ``module`` since its constructor returned that rebuilding it from its init
    arguments undoes: changes to how it computes or trains (hooks registered, parameters replaced,
    reparametrized or frozen), and parameters written in place (a custom initialization)."""
    record = module.__dict__.get(_BUILT_PARAMETERS_KEY)
    if record is None:
        return [], []
    marks, hooks = record
    changed: list[str] = []
    written: list[str] = []
    now = _parameter_marks(module)
    for name, (ident, version, requires_grad) in marks.items():
        if name not in now or now[name][0] != ident:
            changed.append(f"its parameter {name!r} was replaced or reparametrized")
        elif now[name][2] != requires_grad:
            changed.append(f"{name}.requires_grad was set to {now[name][2]}")
        elif now[name][1] != version:
            written.append(name)
    changed += [f"{name or 'it'} got a forward or backward hook" for name, n in _hooks(module).items()
                if n > hooks.get(name, 0)]
    return changed, written


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
