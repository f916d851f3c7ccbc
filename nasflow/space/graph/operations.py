"""Operations: what a graph node computes (a type plus parameters).

The set of types is closed on purpose: IR JSON travels between processes, and an operation nasflow
does not know how to generate code for must fail on load, not deep inside a trial.

- ``_inputs`` / ``_outputs``: a graph's signature and its returned value.
- ``module``: a basic unit, constructed as ``cls(*args, **kwargs)`` (arguments may hold mutables).
- ``function`` / ``method``: ``target(...)`` or ``first_arg.name(...)``.
- ``attribute``: a parameter, buffer or tensor constant of the traced module.
- ``cell``: a call of another graph of the same model (a sub-graph).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .errors import GraphFormatError, UnknownOperationError
from .values import Ref, dump_value, freeze_value, has_mutable, load_value

__all__ = ["Operation", "InputsOp", "OutputsOp", "ModuleOp", "FunctionOp", "MethodOp", "AttributeOp", "Cell"]


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
    def load(data: dict[str, Any], memo: dict[str, Any] | None = None, where: str = "") -> Operation:
        if not isinstance(data, dict) or "type" not in data:
            where = f" in {where}" if where else ""
            raise GraphFormatError(f"An operation{where} must be {{'type': ..., 'parameters': ...}}, got {data!r}.")
        return Operation.new(data["type"], load_value(data.get("parameters", {}), memo), where)

    def dump(self) -> dict[str, Any]:
        return {"type": self.type, "parameters": dump_value(self.parameters)}

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

    @property
    def names(self) -> list[str]:
        return [p["name"] for p in self.parameters["signature"]]


class OutputsOp(Operation, type_name="_outputs"):
    """The graph's return value is the output node's first call argument (a template)."""


class ModuleOp(Operation, type_name="module"):
    required = ("cls", "args", "kwargs")

    @property
    def cls(self) -> Ref:
        return self.parameters["cls"]


class FunctionOp(Operation, type_name="function"):
    required = ("target",)

    @property
    def target(self) -> Ref:
        return self.parameters["target"]


class MethodOp(Operation, type_name="method"):
    required = ("name",)


class AttributeOp(Operation, type_name="attribute"):
    """``kind``: parameter, buffer or constant; ``value`` is kept when small (else ``shape``/``dtype``)."""

    required = ("kind", "shape", "dtype")

    @staticmethod
    def of(kind: str, tensor: torch.Tensor, *, max_stored: int = 4096, persistent: bool = True) -> AttributeOp:
        keep = kind == "constant" or tensor.numel() <= max_stored
        return AttributeOp(kind=kind, shape=list(tensor.shape), dtype=tensor.dtype,
                           requires_grad=bool(tensor.requires_grad), persistent=persistent,
                           value=tensor.detach().clone() if keep else None)


class Cell(Operation, type_name="cell"):
    """A call of sub-graph ``graph`` (NNI's name for it)."""

    required = ("graph",)

    @property
    def graph_name(self) -> str:
        return self.parameters["graph"]
