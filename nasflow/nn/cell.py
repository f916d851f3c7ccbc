"""``Cell``: a DARTS-style cell, a small DAG whose operations and edges are searched.

Node ``k`` (counting the ``num_predecessors`` inputs first) sums ``num_ops_per_node`` operations;
each operation is a ``LayerChoice`` over ``op_candidates`` applied to one earlier node picked by an
``InputChoice``. Labels are ``<cell>/op_<k>_<j>`` and ``<cell>/input_<k>_<j>``.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from nasflow.mutable import auto_label, label_scope

from .base import MutableModule
from .choice import ChosenInputs, InputChoice, LayerChoice, require_plain

__all__ = ["Cell"]

OpFactory = nn.Module | Callable[..., nn.Module]


def _build_op(candidate: OpFactory, node_index: int, op_index: int) -> nn.Module:
    if isinstance(candidate, nn.Module):
        return copy.deepcopy(candidate)
    n_params = len(inspect.signature(candidate).parameters)
    return candidate(*[node_index, op_index][:n_params])


class _Identity(nn.Module):
    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return inputs


class _PassThrough(nn.Module):
    def forward(self, output: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
        return output


class Cell(MutableModule):
    """A searched DAG of operations (see module docstring).

    ``merge_op='all'`` concatenates every node's output along ``concat_dim``; ``'loose_end'`` only
    those no operation consumes. ``preprocessor(inputs) -> inputs`` and
    ``postprocessor(output, inputs) -> output`` are optional modules around the DAG.
    """

    def __init__(
        self,
        op_candidates: list[OpFactory] | dict[str, OpFactory],
        num_nodes: int,
        num_ops_per_node: int = 1,
        num_predecessors: int = 1,
        merge_op: Literal["all", "loose_end"] = "all",
        preprocessor: nn.Module | None = None,
        postprocessor: nn.Module | None = None,
        concat_dim: int = 1,
        *,
        label: str | None = None,
    ) -> None:
        super().__init__()
        self._label = auto_label(label)
        where = f"Cell {self._label!r}"
        for name, value in (("num_nodes", num_nodes), ("num_ops_per_node", num_ops_per_node),
                            ("num_predecessors", num_predecessors)):
            require_plain(value, name, where)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}.")
        if merge_op not in ("all", "loose_end"):
            raise ValueError(f"{where}: merge_op must be 'all' or 'loose_end', got {merge_op!r}.")
        if not op_candidates:
            raise ValueError(f"{where}: op_candidates is empty; give it at least one operation.")
        self.num_nodes, self.num_ops_per_node = num_nodes, num_ops_per_node
        self.num_predecessors, self.merge_op, self.concat_dim = num_predecessors, merge_op, concat_dim
        self.preprocessor = preprocessor or _Identity()
        self.postprocessor = postprocessor or _PassThrough()
        self.ops = nn.ModuleList()
        self.inputs = nn.ModuleList()
        with label_scope(self._label, absolute=True):
            for k in range(num_predecessors, num_predecessors + num_nodes):
                node_ops, node_inputs = nn.ModuleList(), nn.ModuleList()
                for j in range(num_ops_per_node):
                    candidates = self._candidates(op_candidates, k, j)
                    node_ops.append(LayerChoice(candidates, label=f"{self._label}/op_{k}_{j}"))
                    node_inputs.append(InputChoice(k, 1, "none", label=f"{self._label}/input_{k}_{j}"))
                self.ops.append(node_ops)
                self.inputs.append(node_inputs)

    @staticmethod
    def _candidates(op_candidates: Any, node_index: int, op_index: int) -> Any:
        if isinstance(op_candidates, dict):
            return {name: _build_op(c, node_index, op_index) for name, c in op_candidates.items()}
        return [_build_op(c, node_index, op_index) for c in op_candidates]

    @property
    def label(self) -> str:
        return self._label

    def _chosen_input(self, selector: nn.Module) -> int:
        if isinstance(selector, ChosenInputs):
            return selector.chosen if isinstance(selector.chosen, int) else selector.chosen[0]
        return selector.choice.default()  # type: ignore[union-attr]

    def output_node_indices(self) -> list[int]:
        """Which nodes the cell's output concatenates (depends on the chosen inputs for 'loose_end')."""
        nodes = list(range(self.num_predecessors, self.num_predecessors + self.num_nodes))
        if self.merge_op == "all":
            return nodes
        used = {self._chosen_input(sel) for node_inputs in self.inputs for sel in node_inputs}
        return [k for k in nodes if k not in used]

    def forward(self, *inputs: Any) -> torch.Tensor:
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
            inputs = tuple(inputs[0])
        if len(inputs) != self.num_predecessors:
            raise ValueError(f"Cell {self.label!r} expects {self.num_predecessors} inputs, got {len(inputs)}.")
        states = list(self.preprocessor(list(inputs)))
        for node_ops, node_inputs in zip(self.ops, self.inputs, strict=True):
            outputs = [op(selector(states)) for op, selector in zip(node_ops, node_inputs, strict=True)]
            states.append(sum(outputs[1:], outputs[0]))
        merged = torch.cat([states[k] for k in self.output_node_indices()], dim=self.concat_dim)
        return self.postprocessor(merged, list(inputs))

    def extra_repr(self) -> str:
        return f"num_nodes={self.num_nodes}, merge_op={self.merge_op!r}, label={self.label!r}"
