"""Plain torch modules need plain values: a clear error when a mutable reaches one in a space.

``nn.Linear(3, nasflow.choice('w', [4, 8]))`` inside a ``ModelSpace`` fails deep in torch with a
message about ``empty()`` and ``size``, or (``nn.ReLU(inplace=choice)``) does not fail at all and
keeps a mutable that nothing will ever freeze. The constructor of every ``ModelSpace`` goes through
``explain_mutable_arguments``, which turns the first case into an error naming the module, the
argument and the label, and catches the second by looking at torch's modules once built. Only
torch's own module classes are checked: a user's plain module may take a mutable on purpose and
resolve it with ``ensure_frozen``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import TracebackType
from typing import Any

from torch import nn

from nasflow.mutable import Mutable
from nasflow.mutable.frozen import frozen_context

from .base import MutableModule

__all__ = ["MutableArgumentError", "explain_mutable_arguments", "check_plain_modules"]


class MutableArgumentError(TypeError):
    """A mutable was given to a plain torch module, which cannot search over it."""


def _fix(module_type: type, argument: str) -> str:
    from . import layers

    mutable_name = f"Mutable{module_type.__name__}"
    if hasattr(layers, mutable_name):
        how = f"use nasflow.nn.{mutable_name}, whose arguments may be mutables"
    else:
        torch_name = f"nn.{module_type.__name__}"
        wrapper = f"class {mutable_name}(nasflow.nn.ParametrizedModule, {torch_name}, wraps={torch_name})"
        how = f"define `{wrapper}` and use it"
    return f"To search over it, {how}; to fix one value, pass nasflow.mutable.ensure_frozen({argument})."


def _mutables_in(value: Any) -> list[Mutable]:
    if isinstance(value, Mutable):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, Mutable)]
    return []


def _explain(space_name: str, err: Exception) -> MutableArgumentError | None:
    """The clear error for ``err`` when a plain module's ``__init__`` got a mutable, else None."""
    tb: TracebackType | None = err.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        owner = frame.f_locals.get("self")
        if frame.f_code.co_name == "__init__" and _is_torch_module(owner):
            for name, value in frame.f_locals.items():
                found = _mutables_in(value)
                if name != "self" and found:
                    kind = type(owner)
                    return MutableArgumentError(
                        f"{space_name}: the plain module {kind.__module__}.{kind.__qualname__} got the mutable "
                        f"{found[0]!r} as its argument {name!r}, but a plain torch module needs a plain value "
                        f"(torch said: {err}). {_fix(kind, name)}"
                    )
        tb = tb.tb_next
    return None


def _is_torch_module(obj: Any) -> bool:
    """A module of torch's own (``torch.nn.Linear``...): one that cannot take a mutable.

    User-defined plain modules are left alone: they may hold a mutable on purpose and resolve it
    with ``ensure_frozen``.
    """
    return (
        isinstance(obj, nn.Module)
        and not isinstance(obj, MutableModule)
        and type(obj).__module__.startswith("torch.")
    )


def check_plain_modules(space: nn.Module) -> None:
    """Refuse a torch module that kept a mutable as an attribute (it would never be frozen)."""
    for path, module in space.named_modules():
        if not _is_torch_module(module):
            continue
        for attribute, value in vars(module).items():
            found = _mutables_in(value)
            if found:
                kind = type(module)
                raise MutableArgumentError(
                    f"{type(space).__name__}: module {path!r} ({kind.__module__}.{kind.__qualname__}) holds the "
                    f"mutable {found[0]!r} in its attribute {attribute!r}; a plain torch module needs a plain "
                    f"value and would never be frozen. {_fix(kind, attribute)}"
                )


def explain_mutable_arguments(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a ``ModelSpace.__init__`` so a mutable given to a plain module gets a clear error."""

    @functools.wraps(init)
    def wrapper(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except MutableArgumentError:
            raise
        except (TypeError, ValueError, RuntimeError) as err:  # torch may check a mutable argument and fail any way
            explained = _explain(type(self).__name__, err)
            if explained is None:
                raise
            raise explained from err
        if frozen_context.current_model() is None:  # a frozen model is built from values, never mutables
            check_plain_modules(self)

    return wrapper
