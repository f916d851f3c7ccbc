"""The JSON form of graph IR values: plain JSON plus one-key tagged objects for what JSON lacks.

Reading is safe by construction: no pickle anywhere, every function or class reference is checked
against the allow-list of ``refs`` (user references must be listed in the IR's ``user_refs``, and
are not imported here), dtypes must be real torch dtypes, and tensors are raw numbers.
"""

from __future__ import annotations

import base64
import keyword
import math
from collections.abc import Callable
from typing import Any

import torch

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
from .refs import DTYPES, TORCH_CONSTANTS, Ref, check_ref, is_library, ref_of, resolve
from .values import ModuleSpec, Slot, TrainingFlag, is_missing

__all__ = ["IRWriter", "IRReader", "dump_value", "load_value", "check_call"]

_SCALARS = frozenset({str, int, float, bool, type(None)})
_INLINE_NUMEL = 64  # tensors up to this size are written as readable lists, larger ones as raw bytes


class IRWriter:
    """Writes IR values as JSON data, collecting every reference it writes (``refs``)."""

    def __init__(self) -> None:
        self.refs: set[Ref] = set()

    def ref(self, ref: Ref) -> str:
        self.refs.add(ref)
        return ref.path

    def value(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, torch.Size):
            return {"__size__": list(value)}
        if isinstance(value, tuple):
            return {"__tuple__": [self.value(v) for v in value]}
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: self.value(v) for k, v in value.items()}
            return {"__dict__": [[self.value(k), self.value(v)] for k, v in value.items()]}
        if isinstance(value, Slot):
            return {"__slot__": value.index}
        if isinstance(value, Ref):
            return {"__ref__": self.ref(value)}
        if isinstance(value, ModuleSpec):
            return {"__module__": [self.ref(value.cls), self.value(value.args), self.value(value.kwargs)]}
        if isinstance(value, TrainingFlag):
            return {"__training__": None}
        if isinstance(value, slice):
            return {"__slice__": [self.value(value.start), self.value(value.stop), self.value(value.step)]}
        if value is Ellipsis:
            return {"__ellipsis__": None}
        if isinstance(value, torch.dtype):
            return {"__dtype__": str(value).removeprefix("torch.")}
        if isinstance(value, torch.device):
            return {"__device__": str(value)}
        if isinstance(value, (torch.memory_format, torch.layout)):
            return {"__torch__": str(value).removeprefix("torch.")}
        if isinstance(value, torch.Tensor):
            return {"__tensor__": self.tensor(value)}
        if isinstance(value, Mutable):
            return {"__mutable__": self.mutable(value)}
        raise GraphFormatError(f"Cannot write {value!r} ({type(value).__qualname__}) to graph IR JSON.")

    @staticmethod
    def tensor(t: torch.Tensor) -> dict[str, Any]:
        t = t.detach().cpu()
        out: dict[str, Any] = {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
        if t.numel() <= _INLINE_NUMEL and not t.is_complex():
            data = t.tolist()
            out["data"] = data if t.is_floating_point() and not _has_nonfinite(t) else _plain_numbers(data)
        else:  # raw bytes in the machine's byte order
            out["bytes"] = base64.b64encode(t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()).decode()
        return out

    def function(self, fn: Callable[..., Any], owner: Mutable) -> str:
        if isinstance(fn, _UserFunction):
            return self.ref(fn.ref)
        ref = ref_of(fn)
        if ref is None:
            raise GraphFormatError(
                f"The choice expression {owner!r} computes with {fn!r}, which has no import path (a lambda or a "
                "local function): the graph IR names functions by path and never pickles them. Define the "
                "function at module level in an importable module."
            )
        return self.ref(check_ref(ref, None, f"the choice expression {owner!r}"))

    def mutable(self, m: Mutable) -> dict[str, Any]:
        out: dict[str, Any]
        if isinstance(m, (Categorical, CategoricalMultiple)):
            out = {"type": type(m).__name__, "label": m.label, "values": [self.value(v) for v in m.values],
                   "weights": m.weights}
            if isinstance(m, CategoricalMultiple):
                out["n_chosen"] = m.n_chosen
        elif isinstance(m, Numerical):
            out = {"type": "Numerical", "label": m.label, "low": self.value(m.low), "high": self.value(m.high),
                   "mu": self.value(m.mu), "sigma": self.value(m.sigma), "log_distributed": m.log_distributed,
                   "quantize": self.value(m.quantize)}
        elif isinstance(m, MutableExpression):
            return {"type": "MutableExpression", "function": self.function(m.function, m),
                    "template": m.repr_template, "arguments": [self.value(a) for a in m.arguments]}
        elif isinstance(m, ExpressionConstraint):
            return {"type": "ExpressionConstraint", "label": m.label, "expression": self.value(m.expression)}
        elif isinstance(m, MutableList):
            return {"type": "MutableList", "items": [self.value(v) for v in m.mutables]}
        elif isinstance(m, MutableDict):
            return {"type": "MutableDict", "items": self.value(dict(m.mutables))}
        else:
            raise GraphFormatError(
                f"The mutable {m!r} ({type(m).__qualname__}) cannot be written to graph IR JSON, which holds "
                "Categorical, CategoricalMultiple, Numerical, expressions, constraints, MutableList and MutableDict "
                "(and never pickles). Use one of those, or the simplified model format."
            )
        if not is_missing(m.default_value):  # type: ignore[attr-defined]
            out["default"] = self.value(m.default_value)  # type: ignore[attr-defined]
        return out


def _has_nonfinite(t: torch.Tensor) -> bool:
    return bool((~torch.isfinite(t)).any())


def _plain_numbers(data: Any) -> Any:
    if isinstance(data, list):
        return [_plain_numbers(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return {"__float__": repr(data)}
    return data


class _UserFunction:
    """A user function inside a loaded choice expression: imported on first call, never on load."""

    __slots__ = ("ref", "_fn")

    def __init__(self, ref: Ref) -> None:
        self.ref, self._fn = ref, None

    def __call__(self, *args: Any) -> Any:
        if self._fn is None:
            self._fn = resolve(self.ref)
        return self._fn(*args)

    def __repr__(self) -> str:
        return self.ref.path


class IRReader:
    """Reads IR values from JSON data. ``user_refs``: the user references the IR declares; every
    other reference must be on the library allow-list. Each label loads as one shared mutable."""

    def __init__(self, user_refs: Any = ()) -> None:
        if not isinstance(user_refs, (list, tuple, set, frozenset)) or not all(isinstance(r, str) for r in user_refs):
            raise GraphFormatError("The graph IR's 'user_refs' must be a list of 'module:Name' strings.")
        self.user_refs = frozenset(user_refs)
        self.mutables: dict[str, LabeledMutable] = {}
        self._refs: dict[str, Ref] = {}

    def ref(self, path: Any, where: str) -> Ref:
        if not isinstance(path, str):
            raise GraphFormatError(f"{where}: a reference must be a 'module:Name' string, got {path!r}.")
        if path not in self._refs:
            self._refs[path] = check_ref(Ref(path), self.user_refs, where)
        return self._refs[path]

    def value(self, data: Any, where: str = "graph IR") -> Any:
        if type(data) in _SCALARS:
            return data
        if isinstance(data, list):
            return [self.value(v, where) for v in data]
        if isinstance(data, dict):
            if len(data) == 1:
                key = next(iter(data))
                if key.startswith("__"):
                    tag = _TAGS.get(key)
                    if tag is None:
                        raise GraphFormatError(f"{where}: unknown value tag {key!r} in graph IR JSON.")
                    try:
                        return tag(self, data[key], where)
                    except GraphFormatError:
                        raise
                    except (TypeError, ValueError, KeyError, IndexError, RuntimeError, OverflowError) as err:
                        raise GraphFormatError(f"{where}: malformed {key} value in graph IR JSON: {err}") from err
            return {k: self.value(v, where) for k, v in data.items()}
        if data is None or isinstance(data, (bool, int, float, str)):
            return data
        raise GraphFormatError(f"{where}: {data!r} is not JSON data.")

    def dtype(self, name: Any, where: str) -> torch.dtype:
        if not isinstance(name, str) or name not in DTYPES:
            raise GraphFormatError(f"{where}: {name!r} is not a torch dtype.")
        return DTYPES[name]

    def tensor(self, data: dict[str, Any], where: str) -> torch.Tensor:
        dtype = self.dtype(data["dtype"], where)
        shape = data["shape"]
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise GraphFormatError(f"{where}: a tensor shape must be a list of non-negative integers, got {shape!r}.")
        if "bytes" in data:
            raw = base64.b64decode(data["bytes"], validate=True)
            numel = math.prod(shape)
            if len(raw) != numel * dtype.itemsize:
                raise GraphFormatError(f"{where}: tensor data holds {len(raw)} bytes, its shape and dtype need "
                                       f"{numel * dtype.itemsize}.")
            if numel == 0:
                return torch.empty(shape, dtype=dtype)
            return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)
        return torch.tensor(self.value(data["data"], where), dtype=dtype).reshape(shape)

    def function(self, path: Any, where: str) -> Callable[..., Any]:
        ref = self.ref(path, where)
        return resolve(ref) if is_library(ref) else _UserFunction(ref)

    def mutable(self, data: dict[str, Any], where: str) -> Mutable:
        kind = data["type"]
        label = data.get("label")
        label = Label(label) if isinstance(label, str) else label  # complete: never scoped again
        if label is not None and label in self.mutables:  # one object per label, as in the space
            return self.mutables[label]
        value = self.value
        default = value(data["default"], where) if "default" in data else MISSING
        result: Mutable
        if kind == "Categorical":
            result = Categorical(value(data["values"], where), weights=data["weights"], default=default, label=label)
        elif kind == "CategoricalMultiple":
            result = CategoricalMultiple(value(data["values"], where), n_chosen=data["n_chosen"],
                                         weights=data["weights"], default=default, label=label)
        elif kind == "Numerical":
            result = Numerical(value(data["low"], where), value(data["high"], where), mu=value(data["mu"], where),
                               sigma=value(data["sigma"], where), log_distributed=data["log_distributed"],
                               quantize=value(data["quantize"], where), default=default, label=label)
        elif kind == "MutableExpression":
            if not isinstance(data["template"], str):
                raise GraphFormatError(f"{where}: an expression template must be a string.")
            return MutableExpression(self.function(data["function"], where), data["template"],
                                     value(data["arguments"], where))
        elif kind == "ExpressionConstraint":
            result = ExpressionConstraint(value(data["expression"], where), label=label)
        elif kind == "MutableList":
            return MutableList(value(data["items"], where))
        elif kind == "MutableDict":
            return MutableDict(value(data["items"], where))
        else:
            raise GraphFormatError(f"{where}: unknown mutable type {kind!r} in graph IR JSON.")
        if isinstance(result, LabeledMutable):
            self.mutables[result.label] = result
        return result


def _torch_constant(reader: IRReader, name: Any, where: str) -> Any:
    if not isinstance(name, str) or name not in TORCH_CONSTANTS:
        raise GraphFormatError(f"{where}: {name!r} is not a torch layout or memory format.")
    return TORCH_CONSTANTS[name]


def _slot(reader: IRReader, index: Any, where: str) -> Slot:
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise GraphFormatError(f"{where}: a slot must be a non-negative integer, got {index!r}.")
    return Slot(index)


def _module_spec(cls: Ref, args: Any, kwargs: Any, where: str) -> ModuleSpec:
    check_call(args, kwargs, where)
    return ModuleSpec(cls, args, kwargs)


def check_call(args: Any, kwargs: Any, where: str) -> None:
    """A call template read from JSON: a tuple of arguments and a dict of keyword arguments whose names
    are identifiers (they are written into generated code)."""
    if not isinstance(args, tuple) or not isinstance(kwargs, dict):
        raise GraphFormatError(f"{where}: a call needs a tuple of arguments and a dict of keyword arguments.")
    for key in kwargs:
        if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
            raise GraphFormatError(f"{where}: keyword argument name {key!r} is not a Python identifier.")


def _float(reader: IRReader, text: Any, where: str) -> float:
    if text not in ("inf", "-inf", "nan"):
        raise GraphFormatError(f"{where}: a tagged float must be 'inf', '-inf' or 'nan', got {text!r}.")
    return float(text)


_TAGS: dict[str, Callable[[IRReader, Any, str], Any]] = {
    "__float__": _float,
    "__size__": lambda r, d, w: torch.Size(d),
    "__tuple__": lambda r, d, w: tuple(r.value(v, w) for v in d),
    "__dict__": lambda r, d, w: {r.value(k, w): r.value(v, w) for k, v in d},
    "__slot__": _slot,
    "__ref__": lambda r, d, w: r.ref(d, w),
    "__module__": lambda r, d, w: _module_spec(r.ref(d[0], w), r.value(d[1], w), r.value(d[2], w), w),
    "__training__": lambda r, d, w: TrainingFlag(),
    "__slice__": lambda r, d, w: slice(*(r.value(v, w) for v in d)),
    "__ellipsis__": lambda r, d, w: Ellipsis,
    "__dtype__": lambda r, d, w: r.dtype(d, w),
    "__device__": lambda r, d, w: torch.device(d),
    "__torch__": _torch_constant,
    "__tensor__": lambda r, d, w: r.tensor(d, w),
    "__mutable__": lambda r, d, w: r.mutable(d, w),
}


def dump_value(value: Any) -> Any:
    """The JSON form of an IR value (tagged dicts for what JSON lacks)."""
    return IRWriter().value(value)


def load_value(data: Any, reader: IRReader | None = None, where: str = "graph IR") -> Any:
    """The IR value of JSON ``data``; references must be library ones unless ``reader`` lists users'."""
    return (reader or IRReader()).value(data, where)
