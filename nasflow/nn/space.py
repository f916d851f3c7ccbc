"""``ModelSpace``: the user's top-level space, which remembers how it was built.

Recording the constructor call is what makes the simplified format possible: a model is the
space's class, its init arguments and a sample, rebuilt anywhere by re-running the constructor
under ``model_context(sample)``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from nasflow.mutable import Constraint, Mutable, Sample, label_scope
from nasflow.mutable.frozen import frozen_context, register_ensure_frozen_hook

from .base import MutableModule
from .plain import explain_mutable_arguments

__all__ = ["BaseModelSpace", "ModelSpace", "model_context", "current_model"]

_local = threading.local()


class BaseModelSpace(Mutable):
    """Marker for a complete search space (as opposed to a part of one)."""


@contextmanager
def model_context(sample: Sample) -> Iterator[Sample]:
    """Inside, constructing a space gives the frozen model that ``sample`` picks."""
    with frozen_context(sample) as merged:
        yield merged


def current_model() -> Sample | None:
    """The sample of the enclosing ``model_context``, or None outside one."""
    return frozen_context.current()


def _constructing() -> list[ModelSpace]:
    if not hasattr(_local, "spaces"):
        _local.spaces = []
    return _local.spaces


def _wrap_init(init: Callable[..., None]) -> Callable[..., None]:
    from .init_recording import recording_init_args  # graph format: record torch.nn init arguments

    @functools.wraps(init)
    def wrapper(self: ModelSpace, *args: Any, **kwargs: Any) -> None:
        if self.__dict__.get("_nf_constructing"):  # a super().__init__ of the outermost call
            init(self, *args, **kwargs)
            return
        self.__dict__["_nf_constructing"] = True
        stack = _constructing()
        registered: list[Mutable] = []
        remove_hook = register_ensure_frozen_hook(registered.append)
        try:
            with label_scope(type(self)._label_prefix, absolute=not stack):
                stack.append(self)
                try:
                    with recording_init_args():
                        init(self, *args, **kwargs)
                finally:
                    stack.pop()
        finally:
            remove_hook()
            del self.__dict__["_nf_constructing"]
        self.__dict__["_nf_init_args"] = (args, kwargs)
        self.__dict__["_nf_frozen_sample"] = current_model()
        if current_model() is None:
            for mutable in registered:
                self.add_mutable(mutable)

    return wrapper


class ModelSpace(BaseModelSpace, MutableModule):
    """Base class of a user's model space. Subclass it and build layers in ``__init__``.

    ``class Net(ModelSpace, label_prefix='net')`` makes automatic labels ``net/1``, ``net/2``, ...
    (default prefix: ``model``). Explicit labels are kept as given.
    """

    _label_prefix: str = "model"

    def __init_subclass__(cls, label_prefix: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if label_prefix is not None:
            cls._label_prefix = label_prefix
        if "__init__" in cls.__dict__:
            init = explain_mutable_arguments(cls.__dict__["__init__"])
            cls.__init__ = _wrap_init(init)  # type: ignore[method-assign]

    @property
    def init_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The ``(args, kwargs)`` this space was built with."""
        if "_nf_init_args" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__} was not built through its constructor.")
        return self.__dict__["_nf_init_args"]

    @property
    def frozen_sample(self) -> Sample | None:
        """The sample this model was frozen with, or None for a space."""
        return self.__dict__.get("_nf_frozen_sample")

    def rebuild(self, sample: Sample) -> ModelSpace:
        """Run the constructor again under ``sample``: a fresh frozen model (new weights)."""
        self.validate(sample)
        args, kwargs = self.init_args
        with model_context(sample):
            return type(self)(*args, **kwargs)

    def freeze(self, sample: Sample) -> ModelSpace:  # type: ignore[override]
        """The model ``sample`` picks, keeping the weights of every kept part.

        Choices made in plain Python while building (``ensure_frozen``) can only be honoured by
        rebuilding, so such spaces are rebuilt, and their weights are not kept. A constraint added
        with ``add_mutable`` only checks the sample, so it does not force a rebuild.
        """
        self.validate(sample)
        if any(not isinstance(m, Constraint) for m in self.mutables):
            return self.rebuild(sample)
        frozen = super().freeze(sample)
        frozen.__dict__["_nf_frozen_sample"] = {k: sample[k] for k in self.simplify() if k in sample}
        return frozen  # type: ignore[return-value]
