"""Tracing one module's forward() with torch.fx, set up so the graph computes what the code computes.

torch.fx's defaults would make a traced graph silently differ from the module in several ways;
the tracer here changes them at the root:

- buffers read through a method or an index (``self.mask[:t, :t]``, ``self.stats.mean()``) stay
  graph inputs (``proxy_buffer_attributes``) instead of being evaluated once into constants;
- in-place operators (``y += 1``, ``y[i] = v``) are recorded as in-place operations instead of
  being rebound out of place, so aliases (``y = x``) see the update as in eager PyTorch;
- tensor factories (``torch.zeros``, ``torch.arange``, ``torch.randn``...) are recorded as calls, with
  traced arguments (``torch.zeros(x.shape[0])``) or without (a fresh random tensor on every call);
  ``len(x.shape)`` and ``math`` functions of traced values are recorded too;
- ``assert`` on a traced value becomes a ``torch._assert`` check; a loop over ``x.chunk(n)`` or
  ``torch.split(x, [sizes])`` is unrolled (its length is in the call);
- ``self.training`` stays symbolic (branching on it is refused); a forward that changes a Python
  attribute of its module, switches grad mode or autocast, or asks whether a traced value is a
  tensor (``isinstance``, which tracing would answer wrongly) is refused.

Parameters a call fixes (see ``convert``: left out, or given None, a bool or a string) are traced at
those values (fx's ``concrete_args``), so ``if y is not None:`` takes the branch the call takes.
Failures become a ``GraphConversionError`` that says what was found, where in the user's code, and a
fix for that module.
"""

from __future__ import annotations

import bisect
import builtins
import contextlib
import dis
import inspect
import linecache
import math
import operator
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .errors import GraphConversionError
from .values import TrainingFlag

__all__ = ["trace_module", "fix_for", "traced_container", "same_computation", "signature_of", "value_key",
           "plain_attributes"]

_FACTORIES = ("arange", "as_tensor", "asarray", "bartlett_window", "blackman_window", "empty", "empty_permuted",
              "empty_strided", "eye", "full", "hamming_window", "hann_window", "kaiser_window", "linspace",
              "logspace", "normal", "ones", "rand", "rand_like", "randint", "randint_like", "randn", "randn_like",
              "randperm", "range", "scalar_tensor", "tensor", "tril_indices", "triu_indices", "zeros")
_INPLACE = ("iadd", "isub", "imul", "itruediv", "ifloordiv", "imod", "ipow", "imatmul", "iand", "ior", "ixor",
            "ilshift", "irshift")
_lock = threading.RLock()
_active = threading.local()


def traced_container(module: nn.Module) -> bool:
    """Containers fx traces through rather than calling as one node."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def fix_for(path: str) -> str:
    """How to fix code one traced graph cannot represent, for the module at ``path`` ('' is the space)."""
    if path:
        return ("make that module a basic unit: subclass nasflow.nn.ParametrizedModule (or set "
                "`_nni_basic_unit = True` on its class), so it becomes one graph node that runs its forward() as "
                "written")
    return ("move that code out of the space's own forward(): into a small nn.Module marked as a basic unit "
            "(subclass nasflow.nn.ParametrizedModule, or set `_nni_basic_unit = True` on its class) that "
            "forward() calls, or into a module-level function registered with torch.fx.wrap; or use the "
            "simplified model format, which runs forward() as written")


class _Unsupported(Exception):
    """Code a graph cannot record, met while tracing (turned into a ``GraphConversionError``)."""


class _Tracer(fx.Tracer):
    proxy_buffer_attributes = True

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return not traced_container(m)

    def create_arg(self, a: Any) -> Any:
        if isinstance(a, TrainingFlag):
            return a
        return super().create_arg(a)

    def iter(self, obj: fx.Proxy) -> Iterator[Any]:
        """Iterating over ``x.chunk(3)`` or ``torch.split(x, [2, 4])``: their length is in the call."""
        count = _known_length(obj.node)
        if count is None:
            return super().iter(obj)
        return iter([obj[i] for i in range(count)])

    def to_bool(self, obj: fx.Proxy) -> bool:
        """``assert <traced condition>, message`` becomes ``torch._assert`` (fx's own detection of
        asserts does not know this Python's bytecode); any other branch on a traced value fails."""
        frame = inspect.currentframe()
        code_frame = frame.f_back.f_back if frame is not None and frame.f_back is not None else None
        if code_frame is not None:
            instructions = list(dis.get_instructions(code_frame.f_code))
            by_offset = {i.offset: i for i in instructions}
            at = bisect.bisect_left(instructions, code_frame.f_lasti, key=lambda i: i.offset)
            jump = instructions[at]
            failing = (instructions[at + 1] if jump.opname.endswith("IF_TRUE") else  # assert cond
                       by_offset.get(jump.argval) if jump.opname.endswith("IF_FALSE") else None)  # assert a and ...
            if jump.opname.startswith("POP_JUMP") and failing is not None \
                    and failing.opname == "LOAD_ASSERTION_ERROR":
                after = instructions[instructions.index(failing) + 1]
                message = after.argval if after.opname == "LOAD_CONST" and isinstance(after.argval, str) else None
                self.create_proxy("call_function", torch._assert, (obj, message or "assertion failed in forward()"),
                                  {})
                return True
        return super().to_bool(obj)


def _known_length(node: fx.Node) -> int | None:
    """How many tensors ``chunk(n)`` or ``split([sizes])`` returns (a chunk count of n may give fewer:
    then the generated model fails indexing the missing one rather than computing something else)."""
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", None)
    if node.op not in ("call_method", "call_function") or name not in ("chunk", "split", "tensor_split"):
        return None
    count = node.args[1] if len(node.args) > 1 else node.kwargs.get("chunks", node.kwargs.get("split_size_or_sections"))
    if name == "chunk" and isinstance(count, int):
        return count
    if isinstance(count, (list, tuple)) and all(isinstance(c, int) for c in count):
        return len(count) + (1 if name == "tensor_split" else 0)
    return None


def _find_proxy(value: Any) -> fx.Proxy | None:
    found: list[fx.Proxy] = []
    torch.fx.node.map_aggregate(value, lambda v: found.append(v) if isinstance(v, fx.Proxy) else None)
    return found[0] if found else None


def _factory(function: Any) -> Any:
    """A tensor factory recorded as a graph call while this thread traces (whenever its arguments can
    be written into the graph: a fresh tensor each call, as in the user's code)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tracer = getattr(_active, "tracer", None)
        if tracer is not None:
            proxy = _find_proxy((args, kwargs))
            if proxy is not None:
                return proxy.tracer.create_proxy("call_function", function, args, kwargs)
            with contextlib.suppress(NotImplementedError):
                return tracer.create_proxy("call_function", function, args, kwargs)
        return function(*args, **kwargs)

    wrapper.__wrapped__ = function  # type: ignore[attr-defined]
    return wrapper


_builtin_len = builtins.len


def _len(obj: Any) -> Any:
    """``len`` of a traced value (``len(x.shape)``) recorded as a graph call."""
    if isinstance(obj, fx.Proxy):
        return obj.tracer.create_proxy("call_function", _builtin_len, (obj,), {})
    return _builtin_len(obj)


_builtin_isinstance = builtins.isinstance
_PROXIES = frozenset(c for c in vars(fx.proxy).values() if _builtin_isinstance(c, type) and issubclass(c, fx.Proxy))
_OWN_CODE = (torch.__file__.rpartition("/")[0] + "/", __file__.rpartition("/")[0] + "/")


def _isinstance(obj: Any, cls: Any) -> bool:
    """``isinstance`` that refuses to answer, for the user's code, whether a traced value is a tensor:
    tracing says no (it is a proxy), while the code would see a tensor."""
    if type(obj) in _PROXIES and getattr(_active, "tracer", None) is not None:
        classes = cls if _builtin_isinstance(cls, tuple) else (cls,)
        if any(_builtin_isinstance(c, type) and issubclass(c, torch.Tensor) for c in classes) \
                and not sys._getframe(1).f_code.co_filename.startswith(_OWN_CODE):
            raise _Unsupported("asks isinstance(<traced value>, Tensor), which tracing answers wrongly (the value is a "
                               "placeholder there, a tensor when the model runs)")
    return _builtin_isinstance(obj, cls)


def _unrecordable(function: Any, what: str) -> Any:
    """``function`` failing while this thread traces: what it does cannot be recorded in a graph."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_active, "tracer", None) is not None:
            raise _Unsupported(f"uses {what}, which a traced graph does not record (the generated model would run "
                               "without it)")
        return function(*args, **kwargs)

    return wrapper


_GRAD_MODES = ((torch.no_grad, "__enter__", "torch.no_grad()"), (torch.enable_grad, "__enter__", "torch.enable_grad()"),
               (torch.inference_mode, "__enter__", "torch.inference_mode()"),
               (torch.set_grad_enabled, "__init__", "torch.set_grad_enabled()"),
               (torch.autocast, "__enter__", "torch.autocast()"))


def _inplace(name: str) -> Any:
    target = getattr(operator, name)

    def method(self: fx.Proxy, other: Any) -> fx.Proxy:
        return self.tracer.create_proxy("call_function", target, (self, other), {})

    return method


def _setitem(self: fx.Proxy, key: Any, value: Any) -> None:
    self.tracer.create_proxy("call_function", operator.setitem, (self, key, value), {})


@contextlib.contextmanager
def _tracing(tracer: fx.Tracer) -> Iterator[None]:
    """The patches above, in force while ``tracer`` runs (one trace at a time in the process)."""
    patches: list[tuple[Any, str, Any]] = [(fx.Proxy, f"__{name}__", _inplace(name)) for name in _INPLACE]
    patches.append((fx.Proxy, "__setitem__", _setitem))
    patches.append((builtins, "len", _len))
    patches.append((builtins, "isinstance", _isinstance))
    patches += [(torch, name, _factory(getattr(torch, name))) for name in _FACTORIES]
    patches += [(cls, method, _unrecordable(cls.__dict__[method], what)) for cls, method, what in _GRAD_MODES]
    with _lock:
        saved = [(owner, name, owner.__dict__.get(name, _MISSING)) for owner, name, _ in patches]
        _active.tracer = tracer
        try:
            for owner, name, value in patches:
                setattr(owner, name, value)
            yield
        finally:
            _active.tracer = None
            for owner, name, value in saved:
                if value is _MISSING:
                    delattr(owner, name)
                else:
                    setattr(owner, name, value)


_MISSING = object()


_MODULE_INTERNALS = frozenset(nn.Module().__dict__)


def plain_attributes(module: nn.Module) -> Iterator[tuple[str, Any]]:
    """A module's own attributes that are not torch's bookkeeping (nor nasflow's or fx's)."""
    for key, value in module.__dict__.items():
        if key not in _MODULE_INTERNALS and not key.startswith(("_nf_", "_tensor_constant")):
            yield key, value


def value_key(value: Any) -> Any:
    """A hashable stand-in for a plain attribute value (identity for anything else)."""
    if value is None or isinstance(value, (bool, int, float, str, torch.dtype, torch.device)):
        return (type(value).__name__, value)
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(value_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((repr(k), value_key(v)) for k, v in value.items()))
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    return ("id", id(value))


def _state(module: nn.Module) -> dict[str, Any]:
    """What forward() could change of its module's (and children's) Python state: plain attribute
    values, tensor versions."""
    state: dict[str, Any] = {}
    for name, sub in [("", module), *module.named_children()]:
        for key, value in plain_attributes(sub):
            version = value._version if isinstance(value, torch.Tensor) else None
            state[f"{name}.{key}" if name else key] = (value_key(value), version)
    return state


def signature_of(module: nn.Module) -> list[inspect.Parameter]:
    return list(inspect.signature(module.forward).parameters.values())


def trace_module(module: nn.Module, path: str, where: str, concrete: dict[str, Any]) -> fx.Graph:
    """The fx graph of ``module.forward``, with the parameters in ``concrete`` fixed to their values
    (those parameters have no placeholder in the result)."""
    if not isinstance(getattr(type(module), "forward", None), type(lambda: None)):
        raise GraphConversionError(f"{where} has no Python forward() to trace. To fix it, {fix_for(path)}.")
    saved = module.__dict__.get("training", True)
    before = _state(module)
    module.__dict__["training"] = TrainingFlag(where, fix_for(path))
    tracer = _Tracer()
    try:
        with _tracing(tracer), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fx warns that it cannot check some fixed values
            graph = tracer.trace(module, concrete_args=dict(concrete) if concrete else None)
    except GraphConversionError:
        raise
    except Exception as err:
        raise _explain(err, where, path) from err
    finally:
        module.__dict__["training"] = saved
    changed = sorted(k for k, v in _state(module).items() if before.get(k) != v)
    if changed:
        raise GraphConversionError(
            f"{where} changes {', '.join(changed)} while forward() runs: the generated model would not repeat "
            f"that Python-level update. To fix it, {fix_for(path)}.")
    _drop_concrete_placeholders(graph, set(concrete), {p.name for p in signature_of(module)})
    return graph


def _drop_concrete_placeholders(graph: fx.Graph, fixed: set[str], params: set[str]) -> None:
    """fx keeps a placeholder per fixed parameter (``name_1``), plus a check of its value; the call
    never passes it."""
    if not fixed:
        return
    for node in list(graph.nodes):
        if node.op == "placeholder" and node.target not in params and node.target.rpartition("_")[0] in fixed:
            for user in list(node.users):
                for check in list(user.users):  # torch._assert(x == value)
                    graph.erase_node(check)
                graph.erase_node(user)
            graph.erase_node(node)


def _user_frame(err: BaseException) -> str:
    """' at file:line: code' for the innermost frame of the user's code in ``err``'s traceback."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if "/torch/" not in f.filename and "/nasflow/space/graph/" not in f.filename]
    if not frames:
        return ""
    frame = frames[-1]
    line = (frame.line or linecache.getline(frame.filename, frame.lineno or 0)).strip()
    return f" (at {frame.filename}:{frame.lineno}: `{line}`)"


def _explain(err: Exception, where: str, path: str) -> GraphConversionError:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, _Unsupported):
        found = text
    elif "cannot be iterated" in text:
        found = "iterates over a traced value (a Python loop over a tensor, or unpacking one of unknown length)"
    elif "inputs to control flow" in text:
        found = ("branches on a traced value (an `if`, `while`, `and`/`or` or assert on a tensor or on a number "
                 "computed from one): data-dependent control flow")
    elif "Proxy" in text:
        found = (f"passes a traced value where Python needs a plain one ({text}): for example int()/float() of a "
                 "tensor or of a size, or a Python function that cannot take a tensor")
    else:
        found = f"fails while torch.fx traces it ({type(err).__name__}: {text})"
    return GraphConversionError(f"Cannot convert {where} to a graph: its forward() {found}{_user_frame(err)}. "
                                f"To fix it, {fix_for(path)}.")


def same_computation(general: fx.Graph, specialized: fx.Graph, fixed: dict[str, Any]) -> bool:
    """Whether ``general`` (every parameter traced) computes what ``specialized`` (parameters in
    ``fixed`` at those values) does once those parameters get those values: then their being passed or
    not changes nothing but their value."""
    index: dict[fx.Node, Any] = {}
    general_ops = []
    for node in general.nodes:
        if node.op == "placeholder" and node.target.lstrip("*") in fixed:
            index[node] = _key(fixed[node.target.lstrip("*")])
            continue
        index[node] = ("node", len(general_ops))
        general_ops.append(node)
    special_index: dict[fx.Node, Any] = {}
    special_ops = []
    for node in specialized.nodes:
        special_index[node] = ("node", len(special_ops))
        special_ops.append(node)
    if len(general_ops) != len(special_ops):
        return False
    for a, b in zip(general_ops, special_ops, strict=True):
        if (a.op, a.target) != (b.op, b.target):
            return False
        left = fx.node.map_aggregate((a.args, a.kwargs), lambda v: index[v] if isinstance(v, fx.Node) else _key(v))
        right = fx.node.map_aggregate((b.args, b.kwargs),
                                      lambda v: special_index[v] if isinstance(v, fx.Node) else _key(v))
        if repr(left) != repr(right):
            return False
    return True


def _key(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    return ("value", type(value).__name__, repr(value))
