"""Operations: what a graph node computes (a type plus parameters).

The set of types is closed on purpose: IR JSON travels between processes, and an operation nasflow
does not know how to generate code for must fail on load, not deep inside a trial.

- ``_inputs`` / ``_outputs``: a graph's signature and its returned value.
- ``module``: a basic unit, constructed as ``cls(*args, **kwargs)`` (arguments may hold mutables).
- ``function`` / ``method``: ``target(...)`` or ``first_arg.name(...)``.
- ``attribute``: a parameter, buffer or tensor constant of the traced module.
- ``cell``: a call of another graph of the same model (a sub-graph).

``check`` validates an operation's parameters; loading IR JSON runs it, since names and values end
up in generated source.
"""

from __future__ import annotations

import keyword
import re
from typing import Any, ClassVar

import torch

from .errors import GraphFormatError, UnknownOperationError
from .refs import Ref, public_identifier
from .serialize import IRReader, IRWriter, check_call
from .values import freeze_value, has_mutable

__all__ = ["Operation", "InputsOp", "OutputsOp", "ModuleOp", "FunctionOp", "MethodOp", "AttributeOp", "Cell",
           "GRAPH_NAME", "check_node_call"]

GRAPH_NAME = re.compile(r"[A-Za-z0-9_]+")


class Operation:
    """A node's computation. Treated as immutable: mutators build new operations instead of editing."""

    __slots__ = ("parameters",)
    type: ClassVar[str] = ""
    required: ClassVar[tuple[str, ...]] = ()
    _registry: ClassVar[dict[str, type[Operation]]] = {}

    def __init__(self, **parameters: Any) -> None:
        missing = [key for key in self.required if key not in parameters]
        if missing:
            raise GraphFormatError(f"Operation {self.type!r} needs parameters {missing}, got {sorted(parameters)}.")
        self.parameters = parameters

    def __init_subclass__(cls, type_name: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if type_name:
            cls.type = type_name
            Operation._registry[type_name] = cls

    @staticmethod
    def new(type_name: str, parameters: dict[str, Any], where: str = "") -> Operation:
        """The operation of ``type_name``; an unknown type is an error listing the known ones."""
        cls = Operation._registry.get(type_name)
        if cls is None:
            known = ", ".join(sorted(Operation._registry))
            raise UnknownOperationError(
                f"Unknown operation type {type_name!r}{' in ' + where if where else ''}. Known types: {known}. "
                "The IR was probably written by another version of nasflow, or edited by hand."
            )
        return cls(**parameters)

    @staticmethod
    def load(data: Any, reader: IRReader | None = None, where: str = "graph IR") -> Operation:
        if not isinstance(data, dict) or "type" not in data or not isinstance(data.get("parameters", {}), dict):
            raise GraphFormatError(f"An operation in {where} must be {{'type': ..., 'parameters': {{...}}}}, "
                                   f"got {data!r}.")
        parameters = (reader or IRReader()).value(data.get("parameters", {}), where)
        operation = Operation.new(data["type"], parameters, where)
        operation.check(where)
        return operation

    def check(self, where: str) -> None:
        """Refuse parameters that are not what this operation type takes (IR read from JSON)."""

    def dump(self, writer: IRWriter | None = None) -> dict[str, Any]:
        return {"type": self.type, "parameters": (writer or IRWriter()).value(self.parameters)}

    def replace(self, **updates: Any) -> Operation:
        return type(self)(**{**self.parameters, **updates})

    def has_mutables(self) -> bool:
        return has_mutable(self.parameters)

    def freeze(self, sample: dict[str, Any]) -> Operation:
        """This operation with every mutable parameter replaced by its sampled value."""
        return type(self)(**freeze_value(self.parameters, sample))

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.parameters.items())
        return f"{type(self).__name__}({body})"


class InputsOp(Operation, type_name="_inputs"):
    """``signature``: ``[{'name', 'kind', 'default'?}]`` with kind one of positional, var_positional,
    keyword_only, var_keyword (the traced ``forward``'s own signature)."""

    required = ("signature",)
    kinds = ("positional", "var_positional", "keyword_only", "var_keyword")

    def check(self, where: str) -> None:
        signature = self.parameters["signature"]
        if not isinstance(signature, list):
            raise GraphFormatError(f"{where}: a graph signature must be a list.")
        for param in signature:
            name = param.get("name") if isinstance(param, dict) else None
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name == "self":
                raise GraphFormatError(f"{where}: input name {name!r} is not a Python identifier.")
            if param.get("kind") not in self.kinds or set(param) - {"name", "kind", "default"}:
                raise GraphFormatError(f"{where}: input {name!r} must have a kind among {self.kinds}.")
        if len({p["name"] for p in signature}) != len(signature):
            raise GraphFormatError(f"{where}: two inputs share a name.")

    @property
    def names(self) -> list[str]:
        return [p["name"] for p in self.parameters["signature"]]


class OutputsOp(Operation, type_name="_outputs"):
    """The graph's return value is the output node's first call argument (a template)."""


class ModuleOp(Operation, type_name="module"):
    required = ("cls", "args", "kwargs")

    def check(self, where: str) -> None:
        if not isinstance(self.parameters["cls"], Ref):
            raise GraphFormatError(f"{where}: a module operation needs a class reference.")
        check_call(self.parameters["args"], self.parameters["kwargs"], where)

    @property
    def cls(self) -> Ref:
        return self.parameters["cls"]


class FunctionOp(Operation, type_name="function"):
    required = ("target",)

    def check(self, where: str) -> None:
        if not isinstance(self.parameters["target"], Ref):
            raise GraphFormatError(f"{where}: a function operation needs a function reference.")

    @property
    def target(self) -> Ref:
        return self.parameters["target"]


class MethodOp(Operation, type_name="method"):
    """``name`` is pasted into generated code, so it must be a public identifier."""

    required = ("name",)

    def check(self, where: str) -> None:
        if not public_identifier(self.parameters["name"]):
            raise GraphFormatError(f"{where}: method name {self.parameters['name']!r} is not a public identifier.")


class AttributeOp(Operation, type_name="attribute"):
    """``kind``: parameter, buffer or constant, with its ``value``: a model built from the IR starts from
    the space's values (a non-persistent buffer is in no state dict, so its value is only here)."""

    required = ("kind", "shape", "dtype", "value")

    @staticmethod
    def of(kind: str, tensor: torch.Tensor, *, persistent: bool = True) -> AttributeOp:
        return AttributeOp(kind=kind, shape=list(tensor.shape), dtype=tensor.dtype,
                           requires_grad=bool(tensor.requires_grad), persistent=persistent,
                           value=tensor.detach().clone())

    def check(self, where: str) -> None:
        p = self.parameters
        value = p["value"]
        if p["kind"] not in ("parameter", "buffer", "constant") or not isinstance(p["dtype"], torch.dtype):
            raise GraphFormatError(f"{where}: an attribute needs a kind (parameter, buffer, constant) and a dtype.")
        if not isinstance(value, torch.Tensor) or list(value.shape) != p["shape"] or value.dtype != p["dtype"]:
            raise GraphFormatError(f"{where}: an attribute's value must be a tensor of its shape and dtype.")
        if not isinstance(p.get("requires_grad", False), bool) or not isinstance(p.get("persistent", True), bool):
            raise GraphFormatError(f"{where}: an attribute's requires_grad and persistent must be booleans.")


class Cell(Operation, type_name="cell"):
    """A call of sub-graph ``graph`` (NNI's name for it)."""

    required = ("graph",)

    def check(self, where: str) -> None:
        if not isinstance(self.parameters["graph"], str) or not GRAPH_NAME.fullmatch(self.parameters["graph"]):
            raise GraphFormatError(f"{where}: {self.parameters['graph']!r} is not a graph name.")

    @property
    def graph_name(self) -> str:
        return self.parameters["graph"]


def check_node_call(operation: Operation, args: tuple[Any, ...], kwargs: dict[str, Any], where: str) -> None:
    """What a node's call template must be for its operation: a method is called on one of the node's
    inputs, and ``getattr`` reads a public attribute named by a constant (both end up in code)."""
    from .values import Slot

    if isinstance(operation, MethodOp) and not (args and isinstance(args[0], Slot)):
        raise GraphFormatError(f"{where}: a method is called on one of the node's inputs.")
    if isinstance(operation, FunctionOp) and operation.target.path in ("builtins:getattr", "builtins:hasattr"):
        if len(args) != 2 or kwargs or not public_identifier(args[1]):
            raise GraphFormatError(f"{where}: getattr must read a public attribute named by a constant, "
                                   f"got {args[1:]!r}.")
