"""``ModelSpace``: the user's top-level space, which remembers how it was built.

Recording the constructor call is what makes the simplified format possible: a model is the
space's class, its init arguments and a sample, rebuilt anywhere by re-running the constructor
under ``model_context(sample)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from torch import nn

from nasflow.mutable import Constraint, Mutable, Sample, label_scope
from nasflow.mutable.frozen import frozen_context, frozen_factory, register_ensure_frozen_hook
from nasflow.mutable.labels import strict_label_scope

from .base import MutableModule
from .parametrized import formulate_arguments, init_arguments_with_defaults
from .plain import explain_mutable_arguments

__all__ = ["BaseModelSpace", "ModelSpace", "model_context", "current_model", "outer_label_scope"]



class BaseModelSpace(Mutable):
    """Marker for a complete search space (as opposed to a part of one)."""

    @classmethod
    def frozen_factory(cls, sample: Sample) -> frozen_factory:
        """A factory building this space's class as the model ``sample`` picks: ``Space.frozen_factory(s)(*args)``."""
        return frozen_factory(cls, frozen_context(sample, model=True))


@contextmanager
def model_context(sample: Sample) -> Iterator[Sample]:
    """Inside, constructing a space gives the frozen model that ``sample`` picks."""
    with frozen_context(sample, model=True) as merged:
        yield merged


def current_model() -> Sample | None:
    """The sample of the enclosing ``model_context``, or None outside one."""
    return frozen_context.current_model()


def outer_label_scope(path: list[str] | None) -> Any:
    """A scope at ``path`` (where a space was first built), or a no-op when it was built outside any."""
    return label_scope(_path=path) if path else nullcontext()


def _wrap_init(init: Callable[..., None]) -> Callable[..., None]:
    from .init_recording import recording_init_args  # graph format: record torch.nn init arguments

    @functools.wraps(init)
    def wrapper(self: ModelSpace, *args: Any, **kwargs: Any) -> None:
        if self.__dict__.get("_nf_constructing"):  # a super().__init__ of the outermost call
            init(self, *args, **kwargs)
            return
        self.__dict__["_nf_constructing"] = True
        outer = label_scope.current()
        self.__dict__["_nf_outer_scope"] = list(outer.path) if outer is not None and outer.path else None
        registered: list[Mutable] = []
        dry_run: Sample = {}  # one value per label while building, as NNI's dry run

        def record(mutable: Mutable) -> Sample:
            registered.append(mutable)
            return dry_run

        remove_hook = register_ensure_frozen_hook(record)
        try:
            with type(self)._space_label_scope(), recording_init_args():
                init(self, *args, **kwargs)
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

    Labels follow NNI 3.0: ``class Net(ModelSpace, label_prefix='net')`` puts every label made
    while building it under ``net/`` (``label='lc'`` becomes ``net/lc``; unlabelled choices are
    ``net/1``, ``net/2``, ...), and a space built inside another adds its prefix below the outer
    one's. Without a prefix, labels are kept as given and every choice needs one. The prefix
    belongs to the class it is declared on (a subclass declares its own, as in NNI).
    """

    _label_prefix: str | None = None
    _init_wrapped: Callable[..., None] | None = None  # the constructor as written (its signature names arguments)

    def __init_subclass__(cls, label_prefix: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._label_prefix = label_prefix
        if "__init__" in cls.__dict__:
            cls._init_wrapped = cls.__dict__["__init__"]
            cls.__init__ = _wrap_init(explain_mutable_arguments(cls.__dict__["__init__"]))  # type: ignore[method-assign]
        else:  # an inherited constructor still runs in this class's label scope and is recorded
            cls.__init__ = _wrap_init(cls.__init__)  # type: ignore[method-assign]

    @classmethod
    def _space_label_scope(cls) -> label_scope:
        if cls._label_prefix is None:
            return strict_label_scope(cls.__name__)
        return label_scope(cls._label_prefix)

    @property
    def init_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The ``(args, kwargs)`` this space was built with."""
        if "_nf_init_args" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__} was not built through its constructor.")
        return self.__dict__["_nf_init_args"]

    @property
    def trace_symbol(self) -> type:
        return type(self)

    @property
    def trace_args(self) -> tuple[Any, ...]:
        """Positional constructor arguments that have no name in the signature (NNI's record)."""
        return self._formulated()[0]

    @property
    def trace_kwargs(self) -> dict[str, Any]:
        """Constructor arguments by name, as given (defaults not filled in)."""
        return self._formulated()[1]

    @property
    def args(self) -> dict[str, Any]:
        """Every keyword argument of the constructor, defaults filled in (NNI's ``args``)."""
        args, kwargs = self._formulated()
        return init_arguments_with_defaults(type(self)._init_wrapped or MutableModule.__init__, args, kwargs,
                                            type(self).__name__)

    def _formulated(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args, kwargs = self.init_args
        return formulate_arguments(type(self)._init_wrapped or MutableModule.__init__, args, kwargs)

    @classmethod
    def load_searched_model(cls, name: str, pretrained: bool = False, download: bool = False,
                            progress: bool = True) -> nn.Module:
        raise NotImplementedError(f"{cls.__name__} has no pre-searched models: `load_searched_model` is only "
                                  "available on the hub spaces that ship them.")

    @property
    def frozen_sample(self) -> Sample | None:
        """The sample this model was frozen with, or None for a space."""
        return self.__dict__.get("_nf_frozen_sample")

    def rebuild(self, sample: Sample) -> ModelSpace:
        """Run the constructor again under ``sample``: a fresh frozen model (new weights)."""
        self.validate(sample)
        args, kwargs = self.init_args
        with model_context(sample), self.outer_label_scope():
            return type(self)(*args, **kwargs)

    def outer_label_scope(self) -> Any:
        """The label scope this space was built in, entered again so a rebuild gets the same labels."""
        return outer_label_scope(self.__dict__.get("_nf_outer_scope"))

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
