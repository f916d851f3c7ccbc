"""Values inside the graph IR, and their JSON form.

The IR holds plain Python values plus a few markers: ``Slot`` (a node input inside a call
template), ``Ref`` (an importable function or class, kept as a path so loading IR never imports
user code), ``ModuleSpec`` (a module passed as an argument, as its constructor call), tensors,
dtypes and mutables. ``to_ir_value`` turns what conversion finds into such values (or says why it
cannot); ``dump_value`` / ``load_value`` map them to JSON and back losslessly.
"""

from __future__ import annotations

import base64
import builtins
import importlib
import math
import operator
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle
import torch
import torch.nn.functional as F
from torch import nn

from nasflow.mutable import (
    MISSING,
    Categorical,
    CategoricalMultiple,
    ExpressionConstraint,
    LabeledMutable,
    Mutable,
    MutableDict,
    MutableExpression,
    MutableList,
    Numerical,
)
from nasflow.mutable import label as Label  # noqa: N812

from .errors import GraphFormatError

__all__ = ["Slot", "Ref", "ModuleSpec", "TrainingFlag", "to_ir_value", "dump_value", "load_value",
           "ref_of", "default_of", "map_template", "iter_values", "has_mutable", "freeze_value"]


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

    __slots__ = ("where",)

    def __init__(self, where: str = "") -> None:
        self.where = where

    def __bool__(self) -> bool:
        from .errors import GraphConversionError

        raise GraphConversionError(
            f"{self.where} branches on self.training in forward(), which one traced graph cannot represent. "
            "Make it a basic unit: subclass nasflow.nn.ParametrizedModule (or set _nni_basic_unit = True)."
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrainingFlag)

    def __hash__(self) -> int:
        return hash("training")

    def __repr__(self) -> str:
        return "self.training"


class Ref:
    """An importable object by path ``module:qualname``; resolved only when code is generated."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        if ":" not in path:
            raise GraphFormatError(f"Reference {path!r} must look like 'package.module:Name'.")
        self.path = path

    @property
    def module(self) -> str:
        return self.path.split(":", 1)[0]

    @property
    def qualname(self) -> str:
        return self.path.split(":", 1)[1]

    def resolve(self) -> Any:
        module, qualname = self.path.split(":", 1)
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as err:
            raise ImportError(f"Cannot import {qualname!r} from {module!r} (graph IR reference {self.path!r}): "
                              f"{err}") from err
        return obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"Ref({self.path!r})"


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


_PREFERRED_NAMESPACES: tuple[Any, ...] = (operator, builtins, torch, F, nn, math)


def ref_of(obj: Any) -> Ref | None:
    """The import path of ``obj`` (public aliases first: ``torch:cat``, ``torch.nn:Conv2d``), or None."""
    name = getattr(obj, "__name__", None)
    if isinstance(name, str):
        for namespace in _PREFERRED_NAMESPACES:
            if namespace.__dict__.get(name) is obj:
                return Ref(f"{namespace.__name__}:{name}")
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    if module == "__main__":  # cannot be checked by importing; trusted as written
        return Ref(f"{module}:{qualname}")
    try:
        found = Ref(f"{module}:{qualname}").resolve()
    except ImportError:
        return None
    return Ref(f"{module}:{qualname}") if found is obj else None


def constructor_call(module: nn.Module, where: str,
                     error: type[GraphFormatError] = GraphFormatError) -> tuple[type, tuple, dict[str, Any]]:
    """The class and init arguments that build ``module`` again (a basic unit's node)."""
    from nasflow.nn import ParametrizedModule
    from nasflow.nn.init_recording import recorded_init_args

    if isinstance(module, ParametrizedModule):
        return (type(module)._wraps or type(module), module.__dict__.get("trace_args", ()),
                module.__dict__.get("trace_kwargs", {}))
    recorded = recorded_init_args(module)
    if recorded is None:
        raise error(
            f"The init arguments of {where} were not recorded. nasflow records them for torch.nn modules and "
            "`_nni_basic_unit` classes constructed while a nasflow.nn.ModelSpace is being built: create it "
            "inside your ModelSpace subclass's __init__, or make it a nasflow.nn.ParametrizedModule."
        )
    return type(module), *recorded


def _module_spec(module: nn.Module, where: str) -> ModuleSpec:
    cls, args, kwargs = constructor_call(module, f"{where}: the module argument {type(module).__name__}")
    ref = ref_of(cls)
    if ref is None:
        raise GraphFormatError(f"{where}: module class {cls.__qualname__} cannot be imported; define it at "
                               "module level.")
    return ModuleSpec(ref, to_ir_value(tuple(args), where), to_ir_value(dict(kwargs), where))


def to_ir_value(value: Any, where: str) -> Any:
    """``value`` as an IR value: functions and classes become ``Ref``, modules ``ModuleSpec``."""
    if value is None or isinstance(value, (bool, int, float, str, Slot, Ref, ModuleSpec, TrainingFlag)):
        return value
    if isinstance(value, (Mutable, torch.dtype, torch.device, torch.memory_format, torch.layout)):
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
            return ref
    raise GraphFormatError(
        f"{where}: the value {value!r} ({type(value).__qualname__}) cannot be written into the graph IR. "
        "Use plain numbers, strings, tuples, lists, dicts, tensors, dtypes, mutables, or functions and "
        "classes defined at module level."
    )


# ---- JSON -----------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    """MISSING, or a copy of it (deepcopy and pickle do not keep the sentinel unique)."""
    return isinstance(value, type(MISSING))


def default_of(mutable: Mutable) -> Any:
    """``mutable.default()``, robust to a copied MISSING default (then the first value)."""
    value = mutable.default()
    if _is_missing(value):
        return mutable.values[0]  # type: ignore[attr-defined]
    return value


def _dump_function(fn: Callable[..., Any]) -> Any:
    ref = ref_of(fn)
    if ref is not None and ref.module != "__main__":
        return ref.path
    return {"__pickle__": base64.b64encode(cloudpickle.dumps(fn)).decode("ascii")}


def _load_function(data: Any) -> Callable[..., Any]:
    if isinstance(data, str):
        return Ref(data).resolve()
    return cloudpickle.loads(base64.b64decode(data["__pickle__"]))


def _dump_mutable(m: Mutable) -> dict[str, Any]:
    if isinstance(m, (Categorical, CategoricalMultiple)):
        out: dict[str, Any] = {"type": type(m).__name__, "label": m.label, "values": [dump_value(v) for v in m.values],
                               "weights": m.weights}
        if isinstance(m, CategoricalMultiple):
            out["n_chosen"] = m.n_chosen
        if not _is_missing(m.default_value):
            out["default"] = dump_value(m.default_value)
        return out
    if isinstance(m, Numerical):
        out = {"type": "Numerical", "label": m.label, "low": dump_value(m.low), "high": dump_value(m.high),
               "mu": m.mu, "sigma": m.sigma, "log_distributed": m.log_distributed, "quantize": m.quantize}
        if not _is_missing(m.default_value):
            out["default"] = dump_value(m.default_value)
        return out
    if isinstance(m, MutableExpression):
        return {"type": "MutableExpression", "function": _dump_function(m.function), "template": m.repr_template,
                "arguments": [dump_value(a) for a in m.arguments]}
    if isinstance(m, ExpressionConstraint):
        return {"type": "ExpressionConstraint", "label": m.label, "expression": dump_value(m.expression)}
    if isinstance(m, MutableList):
        return {"type": "MutableList", "items": [dump_value(v) for v in m.mutables]}
    if isinstance(m, MutableDict):
        return {"type": "MutableDict", "items": dump_value(dict(m.mutables))}
    return {"type": "pickle", "data": base64.b64encode(cloudpickle.dumps(m)).decode("ascii")}


def _load_mutable(data: dict[str, Any], memo: dict[str, LabeledMutable]) -> Mutable:
    kind = data["type"]
    label = data.get("label")
    label = Label(label) if isinstance(label, str) else label  # complete: never scoped again
    if label is not None and label in memo:  # one object per label, as in the space
        return memo[label]
    default = load_value(data["default"], memo) if "default" in data else MISSING
    result: Mutable
    if kind == "Categorical":
        result = Categorical([load_value(v, memo) for v in data["values"]], weights=data["weights"], default=default,
                             label=label)
    elif kind == "CategoricalMultiple":
        result = CategoricalMultiple([load_value(v, memo) for v in data["values"]], n_chosen=data["n_chosen"],
                                     weights=data["weights"], default=default, label=label)
    elif kind == "Numerical":
        result = Numerical(load_value(data["low"], memo), load_value(data["high"], memo), mu=data["mu"],
                           sigma=data["sigma"], log_distributed=data["log_distributed"], quantize=data["quantize"],
                           default=default, label=label)
    elif kind == "MutableExpression":
        return MutableExpression(_load_function(data["function"]), data["template"],
                                 [load_value(a, memo) for a in data["arguments"]])
    elif kind == "ExpressionConstraint":
        result = ExpressionConstraint(load_value(data["expression"], memo), label=label)
    elif kind == "MutableList":
        return MutableList(load_value(v, memo) for v in data["items"])
    elif kind == "MutableDict":
        return MutableDict(load_value(data["items"], memo))
    elif kind == "pickle":
        return cloudpickle.loads(base64.b64decode(data["data"]))
    else:
        raise GraphFormatError(f"Unknown mutable type {kind!r} in graph IR JSON.")
    if isinstance(result, LabeledMutable):
        memo[result.label] = result
    return result


def _dump_tensor(t: torch.Tensor) -> dict[str, Any]:
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "data": dump_value(t.tolist())}


def dump_value(value: Any) -> Any:
    """The JSON form of an IR value (tagged dicts for what JSON lacks)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, list):
        return [dump_value(v) for v in value]
    if isinstance(value, torch.Size):
        return {"__size__": list(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [dump_value(v) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: dump_value(v) for k, v in value.items()}
        return {"__dict__": [[dump_value(k), dump_value(v)] for k, v in value.items()]}
    if isinstance(value, Slot):
        return {"__slot__": value.index}
    if isinstance(value, Ref):
        return {"__ref__": value.path}
    if isinstance(value, ModuleSpec):
        return {"__module__": [value.cls.path, dump_value(value.args), dump_value(value.kwargs)]}
    if isinstance(value, TrainingFlag):
        return {"__training__": None}
    if isinstance(value, slice):
        return {"__slice__": [dump_value(value.start), dump_value(value.stop), dump_value(value.step)]}
    if value is Ellipsis:
        return {"__ellipsis__": None}
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if isinstance(value, (torch.memory_format, torch.layout)):
        return {"__torch__": str(value).removeprefix("torch.")}
    if isinstance(value, torch.Tensor):
        return {"__tensor__": _dump_tensor(value)}
    if isinstance(value, Mutable):
        return {"__mutable__": _dump_mutable(value)}
    raise GraphFormatError(f"Cannot write {value!r} ({type(value).__qualname__}) to graph IR JSON.")


_TAGS: dict[str, Callable[[Any, dict[str, LabeledMutable]], Any]] = {
    "__float__": lambda d, m: float(d),
    "__size__": lambda d, m: torch.Size(d),
    "__tuple__": lambda d, m: tuple(load_value(v, m) for v in d),
    "__dict__": lambda d, m: {load_value(k, m): load_value(v, m) for k, v in d},
    "__slot__": lambda d, m: Slot(d),
    "__ref__": lambda d, m: Ref(d),
    "__module__": lambda d, m: ModuleSpec(Ref(d[0]), load_value(d[1], m), load_value(d[2], m)),
    "__training__": lambda d, m: TrainingFlag(),
    "__slice__": lambda d, m: slice(*(load_value(v, m) for v in d)),
    "__ellipsis__": lambda d, m: Ellipsis,
    "__dtype__": lambda d, m: getattr(torch, d),
    "__device__": lambda d, m: torch.device(d),
    "__torch__": lambda d, m: getattr(torch, d),
    "__tensor__": lambda d, m: torch.tensor(load_value(d["data"], m),
                                            dtype=getattr(torch, d["dtype"])).reshape(d["shape"]),
    "__mutable__": lambda d, m: _load_mutable(d, m),
}


def load_value(data: Any, memo: dict[str, LabeledMutable] | None = None) -> Any:
    """The IR value of JSON ``data``; ``memo`` makes every label load as one shared mutable."""
    memo = {} if memo is None else memo
    if isinstance(data, list):
        return [load_value(v, memo) for v in data]
    if isinstance(data, dict):
        if len(data) == 1:
            key = next(iter(data))
            if key in _TAGS:
                return _TAGS[key](data[key], memo)
            if key.startswith("__"):
                raise GraphFormatError(f"Unknown value tag {key!r} in graph IR JSON.")
        return {k: load_value(v, memo) for k, v in data.items()}
    return data


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
