"""``Cell``: a DARTS-style cell, a small DAG whose operations and edges are searched.

Node ``k`` (counting the ``num_predecessors`` inputs first) sums ``num_ops_per_node`` operations;
each operation is a ``LayerChoice`` over ``op_candidates`` applied to one earlier node picked by an
``InputChoice``. As in NNI, the cell is a label scope (its ``label``, or the enclosing scope's next
number) holding ``input_<k>_<j>`` and ``op_<k>_<j>`` (``model/cell/op_2_0``), list candidates are
named ``'0'``, ``'1'``, ..., and an operation factory is called with ``(node_index, op_index,
input_index)``, the input index being None in the space and the chosen one in a frozen model.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from nasflow.mutable import Sample, label_scope
from nasflow.mutable.frozen import frozen_context

from .base import MutableModule, copy_with_children
from .choice import ChosenInputs, InputChoice, LayerChoice, require_plain

__all__ = ["Cell", "CellOpFactory"]

CellOpFactory = Callable[..., nn.Module]
OpCandidates = list[Any] | dict[str, Any] | Callable[[], Any]


def _arity(factory: CellOpFactory) -> int:
    """How many of NNI's ``(node_index, op_index, input_index)`` a factory takes (3 when unknown)."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable
        return 3
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 3
    return min(3, len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]))


def _make_candidates(op_candidates: OpCandidates, node_index: int, op_index: int,
                     chosen: int | None) -> tuple[dict[str, nn.Module], bool]:
    """The candidates of one operation as a dict (list items named '0', '1', ...), and whether a
    factory that takes the input index made one (then it may depend on the chosen input)."""
    reads_input = False

    def make(op: Any) -> nn.Module:
        nonlocal reads_input
        if isinstance(op, nn.Module):
            return copy.deepcopy(op)
        if callable(op):
            arity = _arity(op)
            reads_input = reads_input or arity == 3
            return op(*[node_index, op_index, chosen][:arity])
        raise TypeError(f"Cell: an operation candidate must be a module or a factory returning one, got {op!r}.")

    if isinstance(op_candidates, dict):
        return {str(key): make(op) for key, op in op_candidates.items()}, reads_input
    if isinstance(op_candidates, (list, tuple)):
        return {str(i): make(op) for i, op in enumerate(op_candidates)}, reads_input
    if callable(op_candidates):
        warnings.warn("Passing one callable as a Cell's op_candidates is deprecated (as in NNI); give a list or a "
                      "dict of modules or factories.", DeprecationWarning, stacklevel=3)
        made = op_candidates()
        return (made if isinstance(made, dict) else {str(i): m for i, m in enumerate(made)}), True
    raise TypeError(f"Cell: op_candidates must be a list or dict of modules or factories, got {op_candidates!r}.")


def _load_if_same_shapes(target: nn.Module, source: nn.Module) -> None:
    old, new = source.state_dict(), target.state_dict()
    if old.keys() == new.keys() and all(old[k].shape == new[k].shape for k in old):
        target.load_state_dict(old)


class _Identity(nn.Module):
    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return inputs


class _PassThrough(nn.Module):
    def forward(self, output: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
        return output


class Cell(MutableModule):
    """A searched DAG of operations (see module docstring).

    ``merge_op='all'`` concatenates every node's output along ``concat_dim``; ``'loose_end'`` only
    those no operation consumes. ``output_node_indices`` lists the concatenated nodes: all of them
    in the space (NNI's dry run), the loose ends in a frozen model, so
    ``len(cell.output_node_indices) * channels`` sizes the next layer. ``preprocessor(inputs) ->
    inputs`` and ``postprocessor(output, inputs) -> output`` are optional modules around the DAG.
    """

    def __init__(
        self,
        op_candidates: OpCandidates,
        num_nodes: int,
        num_ops_per_node: int = 1,
        num_predecessors: int = 1,
        merge_op: Literal["all", "loose_end"] = "all",
        preprocessor: Callable[..., Any] | None = None,
        postprocessor: Callable[..., Any] | None = None,
        concat_dim: int = 1,
        *,
        label: str | None = None,
    ) -> None:
        super().__init__()
        where = f"Cell {label!r}" if label is not None else "Cell"
        for name, value in (("num_nodes", num_nodes), ("num_ops_per_node", num_ops_per_node),
                            ("num_predecessors", num_predecessors)):
            require_plain(value, name, where)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}.")
        if merge_op not in ("all", "loose_end"):
            raise ValueError(f"{where}: merge_op must be 'all' or 'loose_end', got {merge_op!r}.")
        if not callable(op_candidates) and not op_candidates:
            raise ValueError(f"{where}: op_candidates is empty; give it at least one operation.")
        self.label_scope = label_scope(label)
        self.num_nodes, self.num_ops_per_node = num_nodes, num_ops_per_node
        self.num_predecessors, self.merge_op, self.concat_dim = num_predecessors, merge_op, concat_dim
        self.preprocessor = preprocessor or _Identity()
        self.ops = nn.ModuleList()
        self.inputs = nn.ModuleList()
        self.postprocessor = postprocessor or _PassThrough()
        self.output_node_indices = list(range(num_predecessors, num_predecessors + num_nodes))
        self.op_candidates_factory: OpCandidates | None = None  # set when operations may depend on their input
        with self.label_scope:
            for k in range(num_predecessors, num_predecessors + num_nodes):
                node_ops, node_inputs = nn.ModuleList(), nn.ModuleList()
                for j in range(num_ops_per_node):
                    selector = InputChoice(k, 1, label=f"input_{k}_{j}")
                    chosen = selector.chosen[0] if isinstance(selector, ChosenInputs) else None
                    if chosen is not None and merge_op == "loose_end" and chosen in self.output_node_indices:
                        self.output_node_indices.remove(chosen)
                    candidates, reads_input = _make_candidates(op_candidates, k, j, chosen)
                    if reads_input:
                        self.op_candidates_factory = op_candidates
                    node_inputs.append(selector)
                    node_ops.append(LayerChoice(candidates, label=f"op_{k}_{j}"))
                self.ops.append(node_ops)
                self.inputs.append(node_inputs)

    @property
    def label(self) -> str:
        return self.label_scope.name

    def freeze_shallow(self, sample: Sample) -> nn.Module:
        """The frozen cell, keeping the chosen operations' weights.

        Operations from factories taking the input index may depend on the chosen input, so such a
        cell is built again under the sample (as NNI does); an operation whose parameters keep their
        shapes still gets its weights from the space.
        """
        if self.op_candidates_factory is not None:
            with frozen_context(sample, model=True):
                new = Cell(self.op_candidates_factory, self.num_nodes, self.num_ops_per_node, self.num_predecessors,
                           self.merge_op, self.preprocessor, self.postprocessor, self.concat_dim, label=self.label)
            for space_ops, new_ops in zip(self.ops, new.ops, strict=True):
                for choice, op in zip(space_ops, new_ops, strict=True):
                    _load_if_same_shapes(op, choice.chosen(sample))
            return new
        new = copy_with_children(self, sample)
        new.__dict__["_mutables"] = []
        if new.merge_op == "loose_end":
            used = {i for node_inputs in new.inputs for selector in node_inputs for i in selector.chosen}
            new.output_node_indices = [k for k in self.output_node_indices if k not in used]
        return new

    def forward(self, *inputs: Any) -> Any:
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
            inputs = tuple(inputs[0])
        if len(inputs) != self.num_predecessors:
            raise ValueError(f"Cell {self.label!r} expects {self.num_predecessors} inputs, got {len(inputs)}.")
        states = list(self.preprocessor(list(inputs)))
        for node_ops, node_inputs in zip(self.ops, self.inputs, strict=True):
            outputs = [op(selector(states)) for op, selector in zip(node_ops, node_inputs, strict=True)]
            states.append(sum(outputs[1:], outputs[0]))
        merged = torch.cat([states[k] for k in self.output_node_indices], dim=self.concat_dim)
        return self.postprocessor(merged, list(inputs))

    def extra_repr(self) -> str:
        return f"num_nodes={self.num_nodes}, merge_op={self.merge_op!r}, label={self.label!r}"
