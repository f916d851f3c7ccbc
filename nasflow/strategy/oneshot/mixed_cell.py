"""Cells in a supernet, where the plain ``Cell`` (its choices made mixed) is not enough.

- :class:`MixedCell`: a cell with ``merge_op='loose_end'`` under a sampling strategy: the nodes it
  concatenates are those no input choice picks *now*. In a space whose ``freeze`` rebuilds the model
  (NNI's NASNet family, where the next cell's width follows the number of loose ends), the layers
  after the cell are built for every node, so the cell keeps every node's place and zeroes the
  nodes in use: the next layer then sees the loose ends through the weights of their places.
- :class:`EdgeCell`: a cell whose operation factories depend on the chosen input (NNI's
  ``(node_index, op_index, input_index)`` factories: in DARTS's reduction cell only operations on the
  cell's inputs have stride 2). As in NNI's one-shot cells, operations live on the *edges*: one set of
  candidates per (node, predecessor), shared by the node's operation slots. Sampled, slot ``k`` of
  node ``i`` runs the chosen operation of the edge from its chosen input; relaxed, it mixes every
  edge and operation by the product of its input and operation probabilities. The frozen cell takes
  each chosen operation's weights from its edge.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nasflow.mutable import Sample
from nasflow.nn import Cell

from .architecture import Architecture
from .mixed import SupernetModule, weighted_sum

__all__ = ["MixedCell", "EdgeCell"]


def _index(value: Any) -> int:
    return int(value[0]) if isinstance(value, (list, tuple)) else int(value)


class _CellSupernet(SupernetModule):
    """What both cells share: the cell's children and numbers, its freezing, its input handling."""

    def __init__(self, cell: Cell, arch: Architecture, keep_places: bool = False) -> None:
        super().__init__(arch)
        self.keep_places = keep_places
        self.__dict__["_cell"] = cell  # not a submodule: its children are this module's
        for name, child in cell.named_children():
            self.add_module(name, child)
        self.label = cell.label
        self.num_predecessors, self.num_nodes, self.concat_dim = cell.num_predecessors, cell.num_nodes, cell.concat_dim
        self.merge_op = cell.merge_op

    def _states(self, inputs: tuple[Any, ...]) -> tuple[list[Tensor], list[Tensor]]:
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
            inputs = tuple(inputs[0])
        if len(inputs) != self.num_predecessors:
            raise ValueError(f"Cell {self.label!r} expects {self.num_predecessors} inputs, got {len(inputs)}.")
        return list(inputs), list(self.preprocessor(list(inputs)))

    def _merge(self, states: list[Tensor], inputs: list[Tensor], used: set[int]) -> Any:
        nodes = range(self.num_predecessors, len(states))
        if self.merge_op == "all":
            merged = [states[k] for k in nodes]
        elif self.keep_places:
            merged = [torch.zeros_like(states[k]) if k in used else states[k] for k in nodes]
        else:
            merged = [states[k] for k in nodes if k not in used]
        return self.postprocessor(torch.cat(merged, dim=self.concat_dim), inputs)

    def freeze_shallow(self, sample: Sample) -> nn.Module:
        cell: Cell = self.__dict__["_cell"]
        cell._modules.update({k: v for k, v in self._modules.items() if k in cell._modules})  # mixed children
        return cell.freeze_shallow(sample)


class MixedCell(_CellSupernet):
    """A loose-ended cell under a sampling strategy (module docstring)."""

    def forward(self, *inputs: Any) -> Any:
        inputs, states = self._states(inputs)
        used: set[int] = set()
        for node_ops, node_inputs in zip(self.ops, self.inputs, strict=True):
            outputs = []
            for op, selector in zip(node_ops, node_inputs, strict=True):
                used.update(selector.current_choice())
                outputs.append(op(selector(states)))
            states.append(sum(outputs[1:], outputs[0]))
        return self._merge(states, inputs, used)

    def extra_repr(self) -> str:
        return f"label={self.label!r}, merge_op='loose_end'"


class EdgeCell(_CellSupernet):
    """A cell of input-dependent operations, with operations on its edges (module docstring)."""

    def __init__(self, cell: Cell, arch: Architecture, keep_places: bool = False) -> None:
        super().__init__(cell, arch, keep_places)
        from nasflow.nn.cell import _make_candidates  # the cell's own way of calling its factories

        factory = cell.op_candidates_factory  # type: ignore[attr-defined]
        self.op_choices = [[op.choice for op in node_ops] for node_ops in cell.ops]
        self.input_choices = [[selector.choice for selector in node_inputs] for node_inputs in cell.inputs]
        for choice in [c for node in self.op_choices + self.input_choices for c in node]:
            self.add_mutable(choice)
        del self.ops, self.inputs  # the slots' own candidates are replaced by the edges'
        self.edges = nn.ModuleList(
            nn.ModuleList(nn.ModuleDict(_make_candidates(factory, i, 0, j)[0]) for j in range(i))
            for i in range(self.num_predecessors, self.num_predecessors + self.num_nodes))

    def forward(self, *inputs: Any) -> Any:
        inputs, states = self._states(inputs)
        arch, used = self.arch, set()
        for edges, op_choices, input_choices in zip(self.edges, self.op_choices, self.input_choices, strict=True):
            if arch.sampled:
                outputs = []
                for op_choice, input_choice in zip(op_choices, input_choices, strict=True):
                    source = _index(arch.value(input_choice))
                    used.add(source)
                    outputs.append(edges[source][str(arch.value(op_choice))](states[source]))
                states.append(sum(outputs[1:], outputs[0]))
                continue
            results = [[edge[str(name)](states[j]) for name in op_choices[0].values] for j, edge in enumerate(edges)]
            mixed = []
            for op_choice, input_choice in zip(op_choices, input_choices, strict=True):
                p_input, p_op = arch.probs(input_choice.label), arch.probs(op_choice.label)
                items = [results[j][o] for j in range(len(edges)) for o in range(len(p_op))]
                weights = [p_input[j] * p_op[o] for j in range(len(edges)) for o in range(len(p_op))]
                mixed.append(weighted_sum(items, weights, op_choice.label))
            states.append(sum(mixed[1:], mixed[0]))
        return self._merge(states, inputs, used)

    def freeze_shallow(self, sample: Sample) -> nn.Module:
        """The cell's own frozen form, each chosen operation holding its edge's weights."""
        cell: Cell = self.__dict__["_cell"]
        cell._modules.update({k: v for k, v in self._modules.items() if k in ("preprocessor", "postprocessor")})
        frozen = cell.freeze_shallow(sample)
        for node, (op_choices, input_choices) in enumerate(zip(self.op_choices, self.input_choices, strict=True)):
            for slot, (op_choice, input_choice) in enumerate(zip(op_choices, input_choices, strict=True)):
                edge = self.edges[node][_index(input_choice.freeze(sample))][str(op_choice.freeze(sample))]
                frozen.ops[node][slot].load_state_dict(edge.state_dict())
        return frozen

    def extra_repr(self) -> str:
        return f"label={self.label!r}, edges per node: {[len(e) for e in self.edges]}"

