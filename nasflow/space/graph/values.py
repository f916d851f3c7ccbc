"""Values inside the graph IR.

The IR holds plain Python values plus a few markers: ``Slot`` (a node input inside a call
template), ``Ref`` (a function or class, kept as a path so loading IR never imports user code; see
``refs``), ``ModuleSpec`` (a module passed as an argument, as its constructor call), tensors,
dtypes and mutables. ``to_ir_value`` turns what conversion finds into such values (or says why it
cannot); ``serialize`` maps them to JSON and back.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from nasflow.mutable import MISSING, Mutable

from .errors import GraphFormatError
from .refs import Ref, check_ref, ref_of

__all__ = ["Slot", "Ref", "ModuleSpec", "TrainingFlag", "to_ir_value", "ref_of", "default_of", "is_missing",
           "map_template", "iter_values", "has_mutable", "freeze_value", "constructor_call"]


class Slot:
    """Input ``index`` of the node whose call template holds it (filled by an incoming edge)."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Slot) and other.index == self.index

    def __hash__(self) -> int:
        return hash(("slot", self.index))

    def __repr__(self) -> str:
        return f"Slot({self.index})"


class TrainingFlag:
    """``self.training`` of the module being traced: kept symbolic, so branching on it is refused."""

    __slots__ = ("where", "fix")

    def __init__(self, where: str = "", fix: str = "") -> None:
        self.where, self.fix = where, fix

    def __bool__(self) -> bool:
        from .errors import GraphConversionError

        raise GraphConversionError(
            f"{self.where} branches on self.training in forward(), which one traced graph cannot represent "
            f"(the generated model would keep one branch in both modes). To fix it, {self.fix}."
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrainingFlag)

    def __hash__(self) -> int:
        return hash("training")

    def __repr__(self) -> str:
        return "self.training"


class ModuleSpec:
    """A module used as an argument, kept as the constructor call that builds it."""

    __slots__ = ("cls", "args", "kwargs")

    def __init__(self, cls: Ref, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.cls, self.args, self.kwargs = cls, tuple(args), dict(kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModuleSpec) and (self.cls, self.args, self.kwargs) == (
            other.cls, other.args, other.kwargs)

    def __hash__(self) -> int:
        return hash(self.cls)

    def __repr__(self) -> str:
        return f"ModuleSpec({self.cls.path}, {self.args}, {self.kwargs})"


def constructor_call(module: nn.Module, where: str,
                     error: type[GraphFormatError] = GraphFormatError) -> tuple[type, tuple, dict[str, Any]]:
    """The class and init arguments that build ``module`` again (a basic unit's node)."""
    from nasflow.nn import ParametrizedModule
    from nasflow.nn.init_recording import changed_after_build, recorded_init_args

    changed = changed_after_build(module)
    if changed:
        raise error(
            f"{where} was changed after it was built ({'; '.join(changed)}); the graph format rebuilds it from "
            "its init arguments and would lose that. Do it in the module's constructor (pass the value to it, "
            "or make the module a nasflow.nn.ParametrizedModule that does it), or use model_format='simplified'."
        )
    if isinstance(module, ParametrizedModule):
        return (type(module)._wraps or type(module), module.__dict__.get("trace_args", ()),
                module.__dict__.get("trace_kwargs", {}))
    recorded = recorded_init_args(module) or _materialized_lazy_call(module)
    if recorded is None:
        raise error(
            f"The init arguments of {where} were not recorded. nasflow records them for torch.nn modules and "
            "`_nni_basic_unit` classes constructed while a nasflow.nn.ModelSpace is being built: create it "
            "inside your ModelSpace subclass's __init__, or make it a nasflow.nn.ParametrizedModule."
        )
    return type(module), *recorded


def _materialized_lazy_call(module: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """The init arguments of a lazy module that a forward pass turned into its ``cls_to_become``: the
    lazy class takes the same arguments as that class minus the first (the input size), now known."""
    from nasflow.nn.init_recording import _RECORD_KEY

    record = module.__dict__.get(_RECORD_KEY)
    if record is None:
        return None
    owner, args, kwargs = record  # owner: the lazy class (or its base) whose __init__ was recorded
    if not issubclass(owner, LazyModuleMixin) or isinstance(module, LazyModuleMixin):
        return None
    first = next(iter(list(inspect.signature(type(module).__init__).parameters)[1:]), None)
    if first is None or not hasattr(module, first):
        return None
    return (getattr(module, first), *args), dict(kwargs)


def _module_spec(module: nn.Module, where: str) -> ModuleSpec:
    cls, args, kwargs = constructor_call(module, f"{where}: the module argument {type(module).__name__}")
    ref = ref_of(cls)
    if ref is None:
        raise GraphFormatError(f"{where}: module class {cls.__qualname__} cannot be imported; define it at "
                               "module level.")
    return ModuleSpec(check_ref(ref, None, where), to_ir_value(tuple(args), where), to_ir_value(dict(kwargs), where))


def to_ir_value(value: Any, where: str) -> Any:
    """``value`` as an IR value: functions and classes become ``Ref``, modules ``ModuleSpec``."""
    if value is None or isinstance(value, (bool, int, float, str, Slot, Ref, ModuleSpec, TrainingFlag)):
        return value
    if isinstance(value, Mutable):
        from .serialize import IRWriter

        try:
            IRWriter().value(value)  # a mutable the IR cannot write (or would have to pickle) is refused now
        except GraphFormatError as err:
            raise GraphFormatError(f"{where}: {err}") from err
        return value
    if isinstance(value, (torch.dtype, torch.device, torch.memory_format, torch.layout)):
        return value
    if isinstance(value, torch.Size):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if value is Ellipsis:
        return value
    if isinstance(value, slice):
        return slice(*(to_ir_value(v, where) for v in (value.start, value.stop, value.step)))
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(to_ir_value(v, where) for v in value)
    if isinstance(value, list):
        return [to_ir_value(v, where) for v in value]
    if isinstance(value, dict):
        return {to_ir_value(k, where): to_ir_value(v, where) for k, v in value.items()}
    if isinstance(value, nn.Module):
        return _module_spec(value, where)
    if callable(value):
        ref = ref_of(value)
        if ref is not None:
            return check_ref(ref, None, where)
    raise GraphFormatError(
        f"{where}: the value {value!r} ({type(value).__qualname__}) cannot be written into the graph IR, which "
        "holds plain numbers, strings, tuples, lists, dicts, tensors, dtypes, mutables, modules, and functions "
        "and classes by their import path (never pickled). Pass such values instead, define the function or "
        "class at module level in an importable module (not a lambda or a local one), or make the module that "
        "takes it a basic unit with plain arguments."
    )


def is_missing(value: Any) -> bool:
    """MISSING, or a copy of it (deepcopy and pickle do not keep the sentinel unique)."""
    return isinstance(value, type(MISSING))


def default_of(mutable: Mutable) -> Any:
    """``mutable.default()``, robust to a copied MISSING default (then the first value)."""
    value = mutable.default()
    if is_missing(value):
        return mutable.values[0]  # type: ignore[attr-defined]
    return value


# ---- walking values ---------------------------------------------------------------------------


def map_template(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``value`` with every leaf replaced by ``fn(leaf)`` (containers and slices rebuilt)."""
    if isinstance(value, list):
        return [map_template(v, fn) for v in value]
    if isinstance(value, tuple) and not isinstance(value, torch.Size):
        return tuple(map_template(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: map_template(v, fn) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(map_template(value.start, fn), map_template(value.stop, fn), map_template(value.step, fn))
    if isinstance(value, ModuleSpec):
        return ModuleSpec(value.cls, map_template(value.args, fn), map_template(value.kwargs, fn))
    return fn(value)


def iter_values(value: Any) -> Iterator[Any]:
    """Every leaf of ``value``."""
    if isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
        for v in value:
            yield from iter_values(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_values(v)
    elif isinstance(value, slice):
        yield from iter_values((value.start, value.stop, value.step))
    elif isinstance(value, ModuleSpec):
        yield value.cls
        yield from iter_values((value.args, value.kwargs))
    else:
        yield value


def has_mutable(value: Any) -> bool:
    return any(isinstance(v, Mutable) for v in iter_values(value))


def freeze_value(value: Any, sample: dict[str, Any]) -> Any:
    """``value`` with every mutable replaced by its value in ``sample``."""
    return map_template(value, lambda v: v.freeze(sample) if isinstance(v, Mutable) else v)
