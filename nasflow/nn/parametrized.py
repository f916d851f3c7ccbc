"""``ParametrizedModule``: a basic unit whose init arguments may be mutables.

Its ``__init__`` always sees plain values (the defaults in a space, the sample's values in a frozen
model); the module records the original arguments, so freezing means constructing it again with
the sampled values. ``MutableLinear`` and friends are such modules wrapping a ``torch.nn`` layer.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from nasflow.mutable import Mutable, Sample, dedup_labeled_mutables
from nasflow.mutable.frozen import frozen_context

from .base import MutableModule, current_sample
from .init_recording import BUILT_KEY, hyperparameters, mark_built

__all__ = ["ParametrizedModule", "ParameterizedModule", "freeze_arguments"]


def _mutables_in(values: Any) -> list[Mutable]:
    return [v for v in values if isinstance(v, Mutable)]


def freeze_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], sample: Sample | None) -> tuple[tuple, dict]:
    """Replace mutable arguments by their value in ``sample`` (their defaults when it is None)."""
    mutables = _mutables_in(args) + _mutables_in(kwargs.values())
    if not mutables:
        return args, kwargs
    if sample is None:
        sample = {}
        for leaf in dedup_labeled_mutables(m for mutable in mutables for m in mutable.leaf_mutables()).values():
            leaf.default(sample)

    def value(x: Any) -> Any:
        return x.freeze(sample) if isinstance(x, Mutable) else x

    return tuple(value(a) for a in args), {k: value(v) for k, v in kwargs.items()}


def formulate_arguments(init: Callable[..., Any], args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional arguments turned into keywords where the signature names them (as NNI records them)."""
    try:
        params = list(inspect.signature(init).parameters.values())[1:]  # drop self
    except (TypeError, ValueError):
        return args, dict(kwargs)
    named: dict[str, Any] = {}
    for i, value in enumerate(args):
        if i >= len(params) or params[i].kind not in (params[i].POSITIONAL_OR_KEYWORD,):
            return args[i:], {**named, **kwargs}
        named[params[i].name] = value
    return (), {**named, **kwargs}


def init_arguments_with_defaults(init: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                                 owner: str) -> dict[str, Any]:
    """NNI's ``.args``: every keyword argument of the constructor call, defaults included."""
    if args:
        raise RuntimeError(f"args is not available when positional argument is not empty ({owner} was built with "
                           f"the positional arguments {args!r}); use trace_args / trace_kwargs.")
    result = dict(kwargs)
    try:
        params = list(inspect.signature(init).parameters.values())[1:]
    except (TypeError, ValueError):
        return result
    for param in params:
        if param.default is not param.empty and param.name not in result:
            result[param.name] = param.default
    return result


def carry_post_construction_state(old: nn.Module, new: nn.Module) -> None:
    """Give ``new`` what the user changed on ``old`` after it was built: weights, ``requires_grad``, attributes.

    Freezing constructs a module again from its recorded arguments; a space that set ``bn.eps`` or
    froze a weight after construction would otherwise lose it silently. Attributes are compared with
    their values right after construction, so values derived from sampled arguments are left alone.
    """
    old_state, new_state = old.state_dict(), new.state_dict()
    if old_state.keys() == new_state.keys() and all(old_state[k].shape == new_state[k].shape for k in old_state):
        new.load_state_dict(old_state)
    old_params = dict(old.named_parameters())
    for name, param in new.named_parameters():
        if name in old_params:
            param.requires_grad_(old_params[name].requires_grad)
    built = old.__dict__.get(BUILT_KEY, {})
    for key, value in hyperparameters(old).items():
        if key in new.__dict__ and (key not in built or built[key] != value):
            setattr(new, key, value)
    new.train(old.training)


def _wrap_init(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def wrapper(self: ParametrizedModule, *args: Any, **kwargs: Any) -> None:
        if self.__dict__.get("_nf_constructing"):
            init(self, *args, **kwargs)
            return
        self.__dict__["_nf_constructing"] = True
        sample = current_sample()
        try:
            plain_args, plain_kwargs = freeze_arguments(args, kwargs, sample)
            init(self, *plain_args, **plain_kwargs)
        finally:
            del self.__dict__["_nf_constructing"]
        frozen = sample is not None
        self.__dict__["trace_args"] = plain_args if frozen else args
        self.__dict__["trace_kwargs"] = plain_kwargs if frozen else kwargs
        if not frozen:
            for mutable in _mutables_in(args) + _mutables_in(kwargs.values()):
                self.add_mutable(mutable)
            mark_built(self)

    return wrapper


class ParametrizedModule(MutableModule):
    """Subclass it (``class Block(ParametrizedModule)``) to accept mutables as init arguments.

    ``wraps=nn.Linear`` makes a mutable variant of a torch layer; built inside ``model_context``,
    such a class returns the plain torch layer.
    """

    _nni_basic_unit = True
    _nf_records_own_init = True  # its trace_args are the record; init_recording leaves it alone
    _wraps: type[nn.Module] | None = None
    _init_wrapped: Callable[..., None] | None = None  # the constructor as written (its signature names arguments)

    def __init_subclass__(cls, wraps: type[nn.Module] | None = None, copy_wrapped: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if wraps is not None:
            cls._wraps = wraps
            cls._init_wrapped = wraps.__init__

            def init(self: Any, *args: Any, **kwargs: Any) -> None:
                wraps.__init__(self, *args, **kwargs)

            init.__doc__ = f"Like ``{wraps.__module__}.{wraps.__qualname__}``; arguments may be mutables."
            cls.__init__ = init  # type: ignore[method-assign]
        if "__init__" in cls.__dict__:
            if wraps is None:
                cls._init_wrapped = cls.__dict__["__init__"]
            cls.__init__ = _wrap_init(cls.__dict__["__init__"])  # type: ignore[method-assign]

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        sample = current_sample()
        if cls._wraps is not None and sample is not None:
            plain_args, plain_kwargs = freeze_arguments(args, kwargs, sample)
            return cls._wraps(*plain_args, **plain_kwargs)
        return super().__new__(cls)

    def freeze_shallow(self, sample: Sample) -> nn.Module:
        """Construct again with the sampled arguments; keep the weights when their shapes agree, and
        whatever else the user changed after construction (see ``carry_post_construction_state``).

        A wrapped torch layer always becomes the plain layer (as when rebuilt under the sample), so
        both freeze paths give the same module types.
        """
        if not self.mutables and self._wraps is None:
            return super().freeze_shallow(sample)  # mutable children (if any) still need freezing
        with frozen_context(sample, model=True):
            new = type(self)(*self.trace_args, **self.trace_kwargs)
        carry_post_construction_state(self, new)
        return new

    @property
    def args(self) -> dict[str, Any]:
        """The constructor's keyword arguments as given (mutables included), defaults filled in."""
        init = type(self)._init_wrapped or type(self).__init__
        args, kwargs = formulate_arguments(init, self.trace_args, self.trace_kwargs)
        return init_arguments_with_defaults(init, args, kwargs, type(self).__name__)

    @property
    def trace_symbol(self) -> type:
        return type(self)

    def __repr__(self) -> str:
        """``Class(arg=value, ...)`` with the arguments as given, as NNI prints it."""
        if "trace_kwargs" not in self.__dict__:
            return nn.Module.__repr__(self)
        args, kwargs = formulate_arguments(type(self)._init_wrapped or type(self).__init__, self.trace_args,
                                           self.trace_kwargs)
        params = [repr(v) for v in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
        return f"{type(self).__name__}({', '.join(params)})"


ParameterizedModule = ParametrizedModule
