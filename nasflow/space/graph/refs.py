"""References to functions and classes in the graph IR, and the allow-list that makes loading IR safe.

The IR names what a node calls as a path (``Ref('torch:cat')``), never as a pickled object. Two
kinds of path are allowed, and loading IR refuses every other one:

- *library* references: public functions and classes of torch (``torch``, ``torch.nn``,
  ``torch.nn.functional``, ``torch.fft``, ``torch.linalg``, ``torch.special``, and ``torch.nn`` module
  classes), ``operator``, ``math``, a few builtins and nasflow's own graph helpers. They are already
  imported; nothing is imported to check or use them. Functions that read or write files, load code
  or change global state (``torch.load``, ``torch.save``, ``torch.hub``, ``torch.set_*``...) are not
  in the list.
- *user* references: the user's basic-unit classes (and the few user functions a space calls),
  listed in the IR's ``user_refs``. Their modules are imported only when a model is instantiated to
  train it; loading, listing, showing and exporting code never import them. A user reference may not
  point into the standard library, builtins, torch or nasflow.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import inspect
import keyword
import math
import operator
import re
import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import GraphFormatError

__all__ = ["Ref", "ref_of", "is_library", "check_ref", "resolve", "public_identifier", "DTYPES", "TORCH_CONSTANTS"]

_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

# Public names of the library namespaces that are not allowed, on top of private (underscored) names.
_DENIED = {
    "operator": {"attrgetter", "methodcaller", "call"},
    "torch": {"load", "save", "from_file", "compile", "hub", "ops", "classes", "library", "jit", "package",
              "serialization", "utils", "cond", "while_loop", "manual_seed", "seed", "set_rng_state",
              "use_deterministic_algorithms", "set_deterministic_debug_mode", "set_float32_matmul_precision",
              "set_default_device", "set_default_dtype", "set_default_tensor_type", "set_num_threads",
              "set_num_interop_threads", "set_printoptions", "set_flush_denormal", "set_warn_always",
              "set_grad_enabled", "set_anomaly_enabled", "set_autocast_enabled", "export", "fx", "onnx",
              "distributed", "multiprocessing", "backends", "cuda", "mps", "xpu", "overrides", "testing"},
}
_BUILTINS = {"abs", "all", "any", "bool", "complex", "dict", "divmod", "enumerate", "float", "frozenset", "getattr",
             "hasattr", "int", "isinstance", "len", "list", "max", "min", "pow", "range", "reversed", "round", "set",
             "slice", "sorted", "str", "sum", "tuple", "zip"}
_NAMESPACES: tuple[tuple[str, Any], ...] = (
    ("operator", operator), ("builtins", builtins), ("torch", torch), ("torch.nn.functional", F), ("torch.nn", nn),
    ("math", math), ("torch.fft", torch.fft), ("torch.linalg", torch.linalg), ("torch.special", torch.special),
)
_LIBRARY_TOPS = frozenset({"torch", "nasflow", "builtins", "operator", "math"})

DTYPES: dict[str, torch.dtype] = {name: value for name, value in vars(torch).items()
                                  if isinstance(value, torch.dtype) and not name.startswith("_")}
TORCH_CONSTANTS: dict[str, Any] = {name: value for name, value in vars(torch).items()
                                   if isinstance(value, (torch.layout, torch.memory_format))
                                   and not name.startswith("_")}


def public_identifier(name: Any) -> bool:
    """A name that may be pasted into generated code as an attribute or method name."""
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")


class Ref:
    """An importable object by path ``module:qualname``. Only a path: nothing is imported to make one."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        module, sep, qualname = path.partition(":") if isinstance(path, str) else ("", "", "")
        if not sep or not _PATH.fullmatch(module) or not _PATH.fullmatch(qualname):
            raise GraphFormatError(f"Reference {path!r} must look like 'package.module:Name' (dotted identifiers).")
        self.path = path

    @property
    def module(self) -> str:
        return self.path.split(":", 1)[0]

    @property
    def qualname(self) -> str:
        return self.path.split(":", 1)[1]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"Ref({self.path!r})"


def _allowed_in(namespace: str, name: str, value: Any) -> bool:
    if name.startswith("_") or name in _DENIED.get(namespace, ()):
        return False
    if namespace == "builtins":
        return name in _BUILTINS
    if isinstance(value, type):
        return issubclass(value, nn.Module) or value is torch.Size
    return callable(value) and not inspect.ismodule(value)


_BY_NAME = dict(_NAMESPACES)
_NOT_FOUND = object()


@functools.cache
def _library_object(path: str) -> Any:
    """The allow-listed object at ``path``, or ``_NOT_FOUND``. Looks only at modules already imported."""
    if path == "torch:_assert":  # what a traced assert statement becomes
        return torch._assert
    module, _, qualname = path.partition(":")
    parts = qualname.split(".")
    if module in _BY_NAME and len(parts) == 1:
        value = vars(_BY_NAME[module]).get(qualname, _NOT_FOUND)
        if value is not _NOT_FOUND and _allowed_in(module, qualname, value):
            return value
    value = sys.modules.get(module, _NOT_FOUND)
    for part in parts:
        value = getattr(value, part, _NOT_FOUND)
    if path == "nasflow.nn.choice:reduce_inputs" or (  # and the functions of nasflow's expressions
            module == "nasflow.mutable.expression" and inspect.isfunction(value) and value.__module__ == module):
        return value
    if any(p.startswith("_") for p in (*module.split("."), *parts)):
        return _NOT_FOUND
    if module.startswith(("torch.", "nasflow.nn")) and isinstance(value, type) and issubclass(value, nn.Module):
        return value if value.__module__ == module else _NOT_FOUND  # a torch or nasflow module class
    return _NOT_FOUND


@functools.cache
def _preferred_paths() -> dict[int, str]:
    """``id(object) -> path`` for the objects of the library namespaces (naming them at conversion)."""
    by_id: dict[int, str] = {id(torch._assert): "torch:_assert"}
    for namespace, module in _NAMESPACES:
        for name, value in vars(module).items():
            if _allowed_in(namespace, name, value):
                by_id.setdefault(id(value), f"{namespace}:{name}")
    return by_id


def is_library(ref: Ref) -> bool:
    return _library_object(ref.path) is not _NOT_FOUND


def ref_of(obj: Any) -> Ref | None:
    """The path of ``obj``: its allow-listed library name (``torch:cat``, ``torch.nn:Conv2d``), else its
    import path as a user reference, or None when it has none (lambdas, local classes)."""
    found = _preferred_paths().get(id(obj))
    if found is not None:
        return Ref(found)
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or not _PATH.fullmatch(qualname):
        return None
    if module != "__main__":
        try:
            target: Any = sys.modules.get(module) or importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError):
            return None
        if target is not obj:
            return None
    return Ref(f"{module}:{qualname}")


def user_ref_problem(ref: Ref) -> str | None:
    """Why ``ref`` cannot be a user reference (None when it can)."""
    top = ref.module.partition(".")[0]
    if ref.module == "__main__":
        return None
    if top in _LIBRARY_TOPS or top in sys.stdlib_module_names:
        return (f"{top!r} objects must be one of nasflow's allow-listed library references, and "
                f"{ref.path!r} is not one")
    if any(part.startswith("__") for part in ref.path.replace(":", ".").split(".")):
        return "dunder names cannot be referenced"
    return None


def check_ref(ref: Ref, user_refs: frozenset[str] | set[str] | None, where: str) -> Ref:
    """``ref`` if the allow-list or the IR's own ``user_refs`` admits it (None: any user reference,
    as at conversion); else a clear error."""
    if is_library(ref):
        return ref
    problem = user_ref_problem(ref)
    if problem is None and (user_refs is None or ref.path in user_refs):
        return ref
    reason = problem or "it is neither a library reference nor listed in the IR's user_refs"
    raise GraphFormatError(
        f"{where}: the graph IR names {ref.path!r}, which it may not ({reason}). Graph IR may only call "
        "torch, torch.nn, torch.nn.functional, operator, math and nasflow functions and classes, plus the "
        "user classes recorded when the space was converted. Refusing to load it."
    )


def resolve(ref: Ref, *, main: dict[str, Any] | None = None) -> Any:
    """The object ``ref`` names. Library references come from the allow-list; user references are
    imported (only done when a model is built to run, or a user function in a choice is evaluated)."""
    value = _library_object(ref.path)
    if value is not _NOT_FOUND:
        return value
    problem = user_ref_problem(ref)
    if problem is not None:
        raise GraphFormatError(f"Refusing to import {ref.path!r}: {problem}.")
    module, qualname = ref.module, ref.qualname
    try:
        if module == "__main__" and main is not None and qualname.partition(".")[0] in main:
            obj: Any = main[qualname.partition(".")[0]]
            qualname = qualname.partition(".")[2]
        else:
            obj = importlib.import_module(module)
        for part in filter(None, qualname.split(".")):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ImportError(f"Cannot import {qualname!r} from {module!r} (graph IR reference {ref.path!r}): {err}. "
                          "Define it in a module the training process can import.") from err
    return obj
