"""Weights between a space (or a frozen model of another format) and a generated module.

Every module, parameter and buffer of the generated code comes from a node whose ``python_name``
(relative to its graph's module) gives its path in the space. The path in a frozen model differs
where a LayerChoice collapsed into its candidate (``lc.2.conv`` -> ``lc.conv``) or a Repeat into a
Sequential (``rep.blocks.1`` -> ``rep.1``); the model records these as ``renames``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from nasflow.nn.base import has_mutables

from .codegen import attribute_names
from .mutator import join_path
from .operations import AttributeOp, Cell, ModuleOp

if TYPE_CHECKING:
    from .space import GraphModelSpace

__all__ = ["WeightMapping", "weight_name_mapping", "load_weights_from", "LoadReport"]


@dataclass
class WeightMapping:
    """Generated module path -> (path in the space, path in a frozen model of the same sample), for
    the modules and tensors nodes build (``modules``) and for the sub-graph modules (``graphs``)."""

    modules: dict[str, tuple[str, str]]
    graphs: dict[str, tuple[str, str]] = field(default_factory=dict)

    def source_key(self, generated_key: str, frozen: bool) -> str | None:
        """The state-dict key in the source for ``generated_key`` (longest module prefix wins)."""
        parts = generated_key.split(".")
        for cut in range(len(parts), 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in self.modules:
                target = self.modules[prefix][1 if frozen else 0]
                return join_path(target, ".".join(parts[cut:]))
        return None


def _rename(path: str, renames: list[tuple[str, str]]) -> str:
    for old, new in sorted(renames, key=lambda r: -len(r[0])):  # innermost first
        if path == old or path.startswith(old + "."):
            path = new + path[len(old):]
    return path


def weight_name_mapping(model: GraphModelSpace) -> WeightMapping:
    """Where each generated module and tensor comes from, in the space and in a frozen model."""
    mapping = WeightMapping({})

    def walk(graph_name: str, prefix: str) -> None:
        graph = model.graphs[graph_name]
        attrs = attribute_names(graph)
        for node in graph.hidden_nodes.values():
            op = node.operation
            if node.name not in attrs or node.python_name is None:
                continue
            generated = join_path(prefix, attrs[node.name])
            space = join_path(graph.space_path, node.python_name)
            if isinstance(op, Cell):
                mapping.graphs[generated] = (space, _rename(space, model.renames))
                walk(op.graph_name, generated)
            elif isinstance(op, (ModuleOp, AttributeOp)):
                mapping.modules[generated] = (space, _rename(space, model.renames))

    walk(model.root_name, "")
    return mapping


@dataclass
class LoadReport:
    """What ``load_weights_from`` did: keys copied, and keys skipped for a shape mismatch (a value
    choice changed the layer), each as a generated key."""

    source: Literal["space", "frozen"]
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def load_weights_from(source: nn.Module, generated: nn.Module, model: GraphModelSpace, *,
                      source_kind: Literal["auto", "space", "frozen"] = "auto", strict: bool = True) -> LoadReport:
    """Copy weights of ``source`` into ``generated`` (``model.executable_model()``).

    ``source`` is the space the model was converted from, or a frozen model of the same sample in
    another format (raw or simplified); ``'auto'`` picks the naming that finds more keys. Tensors
    whose shapes differ are skipped and reported; with ``strict``, a generated tensor that has no
    counterpart at all is an error. Non-persistent buffers (in no state dict) are copied too.
    """
    mapping = weight_name_mapping(model)
    src = {**source.state_dict(), **_non_persistent(source)}
    dst = {**generated.state_dict(), **_non_persistent(generated)}
    if source_kind == "auto":  # ties (no renamed path matters) go to what the source is
        kinds: list[Literal["space", "frozen"]] = ["space", "frozen"] if has_mutables(source) else ["frozen", "space"]
    else:
        kinds = [source_kind]
    best: tuple[int, Literal["space", "frozen"]] = (-1, kinds[0])
    for kind in kinds:
        found = sum(1 for key in dst if mapping.source_key(key, kind == "frozen") in src)
        if found > best[0]:
            best = (found, kind)
    kind = best[1]
    report = LoadReport(kind)
    missing: list[str] = []
    update: dict[str, torch.Tensor] = {}
    for key, tensor in dst.items():
        src_key = mapping.source_key(key, kind == "frozen")
        if src_key is None or src_key not in src:
            missing.append(f"{key} (from {src_key!r})")
        elif src[src_key].shape != tensor.shape:
            report.skipped.append(key)
        else:
            update[key] = src[src_key]
            report.loaded.append(key)
    if strict and missing:
        raise KeyError(f"No {kind} weights for generated tensors: {', '.join(missing[:10])}"
                       + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    generated.load_state_dict(update, strict=False)
    buffers = _non_persistent(generated)
    with torch.no_grad():
        for key in set(update) & set(buffers):
            buffers[key].copy_(update[key])
    return report


def _non_persistent(module: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for path, sub in module.named_modules():
        for name in sub._non_persistent_buffers_set:
            if sub._buffers.get(name) is not None:
                out[join_path(path, name)] = sub._buffers[name]
    return out
