"""The graphs nasflow builds itself rather than traces: a ``Repeat``'s chain of blocks and a
``Cell``'s DAG of chosen operations, each annotated as a mutation point (see ``mutator``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from nasflow.mutable import Mutable
from nasflow.nn import Cell as NasCell
from nasflow.nn import Repeat
from nasflow.nn.cell import _Identity, _PassThrough

from .errors import GraphConversionError
from .ir import Graph, Node, NodeRef
from .mutator import join_path
from .operations import FunctionOp, InputsOp
from .refs import Ref
from .space import GraphModelSpace
from .values import Slot, default_of, to_ir_value

__all__ = ["BuiltGraphs"]


class BuiltGraphs:
    """Mixin of the converter: graphs of Repeat and Cell modules."""

    model: GraphModelSpace
    graph_of: dict[int, str]

    def new_graph(self, module: nn.Module, path: str) -> Graph:
        raise NotImplementedError

    def add_call(self, graph: Graph, module: nn.Module, rel: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 refs: list[NodeRef], name: str) -> Node:
        raise NotImplementedError

    def repeat_graph(self, module: Repeat, path: str) -> str:
        if id(module) in self.graph_of:
            return self.graph_of[id(module)]
        graph = self.new_graph(module, path)
        graph.input_node.operation = InputsOp(signature=[{"name": "x", "kind": "positional"}])
        mutable = module.depth_choice if isinstance(module.depth_choice, Mutable) else None
        count = module.max_depth if mutable is not None else module.depth_choice
        prev: NodeRef = (graph.input_node, 0)
        chain = []
        for i in range(count):
            node = self.add_call(graph, module.blocks[i], f"blocks.{i}", (Slot(0),), {}, [prev], f"block_{i}")
            chain.append(node.name)
            prev = (node, None)
        graph.add_edge(prev, (graph.output_node, 0))
        graph.output_node.args = (Slot(0),)
        self.model.renames.append((join_path(path, "blocks"), path))
        if mutable is not None:
            depth = to_ir_value(mutable, f"the depth of Repeat {module.label!r}")
            graph.mutation = {"type": "repeat", "label": module.label, "depth": depth, "chain": chain}
        return graph.name

    def cell_inputs(self, graph: Graph, module: NasCell, path: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                    refs: list[NodeRef], name: str) -> tuple[tuple[Any, ...], list[NodeRef]]:
        """The Cell's call as ``num_predecessors`` positional tensors (it also accepts one list)."""
        p = module.num_predecessors
        items = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)
        if len(items) == 1 and isinstance(items[0], Slot) and p > 1:  # a list-valued input: index it
            source = refs[items[0].index]
            picked = []
            for i in range(p):
                pick = graph.add_node(f"{name}_input_{i}", FunctionOp(target=Ref("operator:getitem")), (Slot(0), i))
                graph.add_edge(source, (pick, 0))
                picked.append((pick, None))
            return tuple(Slot(i) for i in range(p)), picked
        if kwargs or len(items) != p or not all(isinstance(v, Slot) for v in items):
            raise GraphConversionError(
                f"Cell {module.label!r} at '{path}' must be called with its {p} input tensors (or one list of them)."
            )
        return tuple(Slot(i) for i in range(p)), [refs[v.index] for v in items]

    def cell_graph(self, module: NasCell, path: str) -> str:
        if id(module) in self.graph_of:
            return self.graph_of[id(module)]
        if getattr(module, "op_candidates_factory", None) is not None:
            raise GraphConversionError(
                f"Cell {module.label!r} at '{path}' builds its operations with factories taking the input index "
                "(node_index, op_index, input_index), so an operation depends on which input the sample picks, "
                "and the space holds only the operations built without one. The graph format converts the space "
                "once and cannot follow: use factories taking (node_index, op_index), or the simplified format."
            )
        graph = self.new_graph(module, path)
        p = module.num_predecessors
        signature = [{"name": f"input_{i}", "kind": "positional"} for i in range(p)]
        graph.input_node.operation = InputsOp(signature=signature)
        inputs: list[NodeRef] = [(graph.input_node, i) for i in range(p)]
        states = list(inputs)
        if not isinstance(module.preprocessor, _Identity):
            pre = self.add_call(graph, module.preprocessor, "preprocessor", ([Slot(i) for i in range(p)],), {},
                                inputs, "preprocessor")
            states = []
            for i in range(p):
                pick = graph.add_node(f"state_{i}", FunctionOp(target=Ref("operator:getitem")), (Slot(0), i))
                graph.add_edge((pre, None), (pick, 0))
                states.append((pick, None))
        entries = []
        for a, (node_ops, node_inputs) in enumerate(zip(module.ops, module.inputs, strict=True)):
            k = p + a
            outputs: list[NodeRef] = []
            for j, (op, selector) in enumerate(zip(node_ops, node_inputs, strict=True)):
                chosen = default_of(selector.choice)[0]  # an InputChoice's value is a list (NNI)
                op_node = self.add_call(graph, op, f"ops.{a}.{j}", (Slot(0),), {}, [states[chosen]], f"op_{k}_{j}")
                entries.append({"node": op_node.name, "mutable": selector.choice,
                                "candidates": [[s[0].name, s[1]] for s in states[:k]]})
                outputs.append((op_node, None))
            acc = outputs[0]
            for j, out in enumerate(outputs[1:]):
                add = graph.add_node(f"node_{k}" if j == len(outputs) - 2 else f"node_{k}_sum{j}",
                                     FunctionOp(target=Ref("operator:add")), (Slot(0), Slot(1)))
                graph.add_edge(acc, (add, 0))
                graph.add_edge(out, (add, 1))
                acc = (add, None)
            states.append(acc)
        merged = module.output_node_indices
        merge = graph.add_node("merge", FunctionOp(target=Ref("torch:cat")), ([Slot(i) for i in range(len(merged))],),
                               {"dim": module.concat_dim})
        for i, k in enumerate(merged):
            graph.add_edge(states[k], (merge, i))
        out: NodeRef = (merge, None)
        if not isinstance(module.postprocessor, _PassThrough):
            call = (Slot(0), [Slot(1 + i) for i in range(p)])
            post = self.add_call(graph, module.postprocessor, "postprocessor", call, {}, [out, *inputs],
                                 "postprocessor")
            out = (post, None)
        graph.add_edge(out, (graph.output_node, 0))
        graph.output_node.args = (Slot(0),)
        graph.mutation = {"type": "cell", "label": module.label, "merge_op": module.merge_op, "num_predecessors": p,
                          "merge": merge.name, "inputs": entries, "states": [[s[0].name, s[1]] for s in states]}
        return graph.name
