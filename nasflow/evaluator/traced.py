"""Objects that remember how they were built: the ``Traced`` mixin and ``DataLoader``.

An evaluator must travel to a trial worker and be compared with other evaluators (CGO merges
only models whose evaluators train on the same data with the same settings). Both are easy when
the trainer, the data loaders and the evaluator itself keep their constructor arguments: they
pickle as a *recipe* (class + arguments, not iterator state or loaded batches) and compare by
arguments. Arguments that are not plain values (datasets, tensors, callbacks, functions) compare
by identity, unless they carry an explicit ``nasflow_data_key`` (see :func:`trace_key`).

This module imports no Lightning, so ``DataLoader`` works without the ``lightning`` extra.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Hashable, Iterator
from pathlib import PurePath
from typing import Any

import torch
import torch.utils.data

from nasflow.mutable import Mutable, Sample

__all__ = [
    "Traced", "DataLoader", "trace_arguments", "trace_key", "trace_equal", "trace_mutables", "trace_freeze",
    "rebuild_traced",
]

_PLAIN = (type(None), bool, int, float, complex, str, bytes, enum.Enum, torch.dtype, torch.device, range, PurePath)


class Traced:
    """Mixin: an instance records the arguments it was constructed with.

    ``trace_args`` / ``trace_kwargs`` hold them as given; :func:`trace_arguments` binds them to the
    constructor's signature (defaults filled in) so ``f(1)`` and ``f(x=1)`` compare equal.
    Recording happens in ``__new__``, which sees the outermost call's arguments once, so no
    ``__init__`` is wrapped (Lightning inspects ``__init__`` frames for ``save_hyperparameters``).
    """

    trace_args: tuple[Any, ...]
    trace_kwargs: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__new__(cls)
        # object.__setattr__: nn.Module and DataLoader guard their own __setattr__. Unpickling calls
        # __new__ without arguments and then restores the recorded ones with the rest of the state.
        object.__setattr__(obj, "trace_args", args)
        object.__setattr__(obj, "trace_kwargs", dict(kwargs))
        return obj

    def trace_copy(self) -> Any:
        """A new instance built from the same arguments (shallow: the argument objects are shared)."""
        return type(self)(*self.trace_args, **self.trace_kwargs)


def rebuild_traced(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Unpickling entry point of recipe-pickled objects (``Trainer``, ``DataLoader``)."""
    return cls(*args, **kwargs)


def trace_arguments(obj: Traced) -> dict[str, Any]:
    """The recorded arguments bound to the constructor's signature, defaults included."""
    try:
        signature = inspect.signature(type(obj).__init__)
        bound = signature.bind(obj, *obj.trace_args, **obj.trace_kwargs)
    except (TypeError, ValueError):  # no usable signature: compare the arguments as given
        return {"*args": obj.trace_args, **obj.trace_kwargs}
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop(next(iter(signature.parameters)))  # self
    return arguments


class _Identity:
    """Key part of an object that compares by identity (and keeps it alive, so its id is not reused)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __repr__(self) -> str:
        return f"<{type(self.obj).__name__} at {id(self.obj):#x}>"


def trace_key(value: Any) -> Hashable:
    """A hashable key such that equal keys mean "built the same way from the same data".

    - plain values (numbers, strings, None, enums, dtypes, devices, paths) compare by value and type;
    - lists, tuples, dicts and sets compare element by element;
    - ``Traced`` objects compare by class and bound constructor arguments, recursively;
    - an object with a ``nasflow_data_key`` attribute (e.g. a dataset class that sets it to
      ``("digits", "train")``) compares by class and that key, so equal data survives pickling;
    - anything else (datasets, tensors, callbacks, functions, classes) compares by identity.
    """
    if isinstance(value, _PLAIN):
        return (type(value), value)
    if isinstance(value, Traced) and "trace_kwargs" in vars(value):
        arguments = trace_arguments(value)
        return ("traced", type(value), tuple((name, trace_key(arg)) for name, arg in arguments.items()))
    data_key = getattr(value, "nasflow_data_key", None) if not isinstance(value, type) else None
    if data_key is not None:
        return ("data", type(value), trace_key(data_key))
    if isinstance(value, (list, tuple)):
        return (type(value), tuple(trace_key(item) for item in value))
    if isinstance(value, dict):
        return (dict, frozenset((trace_key(k), trace_key(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return (frozenset, frozenset(trace_key(item) for item in value))
    return _Identity(value)


def trace_equal(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` were built the same way from the same data (see :func:`trace_key`)."""
    return a is b or trace_key(a) == trace_key(b)


def trace_mutables(value: Any) -> Iterator[Mutable]:
    """Mutables anywhere in ``value``: itself, container items, or a ``Traced`` object's arguments."""
    if isinstance(value, Traced) and "trace_kwargs" in vars(value):  # first: a traced evaluator is a Mutable too
        yield from trace_mutables(tuple(value.trace_args))
        yield from trace_mutables(value.trace_kwargs)
    elif isinstance(value, Mutable):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from trace_mutables(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from trace_mutables(item)


def trace_freeze(value: Any, sample: Sample) -> Any:
    """``value`` with its mutables replaced by their values under ``sample``.

    Only what contains a mutable is rebuilt (a ``Traced`` object from its frozen arguments); the rest
    keeps its identity, so frozen evaluators of one search space still share their data.
    """
    if not any(True for _ in trace_mutables(value)):
        return value
    if isinstance(value, Traced):
        args = tuple(trace_freeze(arg, sample) for arg in value.trace_args)
        kwargs = {name: trace_freeze(arg, sample) for name, arg in value.trace_kwargs.items()}
        return type(value)(*args, **kwargs)
    if isinstance(value, Mutable):
        return value.freeze(sample)
    if isinstance(value, dict):
        return type(value)((key, trace_freeze(item, sample)) for key, item in value.items())
    return type(value)(trace_freeze(item, sample) for item in value)


class DataLoader(Traced, torch.utils.data.DataLoader):
    """``torch.utils.data.DataLoader`` that remembers its arguments (NNI's traced ``DataLoader``).

    It pickles as its recipe (dataset + arguments), so an evaluator ships the data set rather than
    loader state, and two loaders compare equal when built from the same dataset object (or equal
    ``nasflow_data_key``) with the same settings.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    __init__.__signature__ = inspect.signature(torch.utils.data.DataLoader.__init__)  # type: ignore[attr-defined]

    def __reduce__(self) -> tuple[Any, ...]:
        return (rebuild_traced, (type(self), self.trace_args, self.trace_kwargs))
