"""Mutators: how a sample turns the graph IR of a space into the IR of one model.

Each mutation point of the IR gets one mutator, whose leaf mutables are the very mutables of the
space (so ``simplify()`` shows the same labels and values as the simplified format), and whose
``mutate`` edits nodes and edges:

- ``LayerChoiceMutator``: replace a node's operation with the chosen candidate's (a module, or a
  ``Cell`` calling the candidate's sub-graph).
- ``InputChoiceMutator``: rewire the node's input edges to the chosen inputs and reduce them with
  plain operations (a single chosen input bypasses the node entirely).
- ``ParameterChoiceMutator``: freeze the value choices in a node's parameters.
- ``RepeatMutator``: cut a Repeat's chain of blocks to the chosen depth.
- ``CellMutator``: point each Cell operation at its chosen predecessor and re-collect the outputs
  a ``loose_end`` cell concatenates (the Cell's operations are LayerChoiceMutators).

Mutators edit a copy of only the graphs they touch; untouched graphs are shared with the space.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nasflow.mutable import LabeledMutable, Mutable, Sample
from nasflow.mutable.base import IsLeaf
from nasflow.space.metrics import ModelStatus

from .errors import GraphFormatError
from .operations import FunctionOp
from .refs import Ref
from .serialize import IRReader, IRWriter
from .values import Slot, iter_values

if TYPE_CHECKING:
    from .ir import Graph, GraphModelSpace, Node, NodeRef

__all__ = ["Mutation", "Mutator", "StationaryMutator", "MutatorSequence", "LayerChoiceMutator",
           "InputChoiceMutator", "ParameterChoiceMutator", "RepeatMutator", "CellMutator", "mutators_of"]


@dataclass
class Mutation:
    """One applied mutator: its type, its label and the values it used."""

    mutator: str
    label: str | None
    samples: list[Any] = field(default_factory=list)

    def dump(self, writer: IRWriter | None = None) -> dict[str, Any]:
        return {"mutator": self.mutator, "label": self.label, "samples": (writer or IRWriter()).value(self.samples)}

    @staticmethod
    def load(data: dict[str, Any], reader: IRReader | None = None) -> Mutation:
        if not isinstance(data["mutator"], str) or not isinstance(data.get("label", ""), (str, type(None))):
            raise GraphFormatError(f"Malformed mutation record {data!r} in graph IR JSON.")
        return Mutation(data["mutator"], data.get("label"),
                        (reader or IRReader()).value(data.get("samples", []), "mutation history"))


def join_path(*parts: str | None) -> str:
    return ".".join(p for p in parts if p)


class Mutator(Mutable):
    """Edits graph IR as a sample says. Subclasses give ``leaf_mutables`` (the labels they read),
    ``graphs`` (the graphs they edit; None for any) and ``mutate`` (the edit, in place)."""

    def __init__(self, *, label: str | None = None) -> None:
        self.label = label
        self._model: GraphModelSpace | None = None

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        return ()

    @property
    def graphs(self) -> set[str] | None:
        return None

    def mutate(self, model: GraphModelSpace, sample: Sample) -> list[Any]:
        """Edit ``model`` in place; return the values used (recorded in the history)."""
        raise NotImplementedError

    def apply(self, model: GraphModelSpace, sample: Sample) -> GraphModelSpace:
        """A mutated copy of ``model``, with this mutation appended to its history."""
        new = model._copy(self.graphs)
        new.sample, new.status = model.sample, model.status
        new.history.append(Mutation(type(self).__name__, self.label, self.mutate(new, sample)))
        return new

    def bind_model(self, model: GraphModelSpace) -> Mutator:
        self._model = model
        return self

    def freeze(self, sample: Sample) -> GraphModelSpace:
        if self._model is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to a model; call bind_model(model) first.")
        self.validate(sample)
        return self.apply(self._model, sample)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(label={self.label!r})"


class StationaryMutator(Mutator):
    """A mutator deciding by one mutable fixed at conversion (its candidates do not depend on
    other decisions), so strategies can sample it like any other choice."""

    def __init__(self, mutable: Mutable, *, label: str | None = None) -> None:
        super().__init__(label=label or getattr(mutable, "label", None))
        self.mutable = mutable

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        return self.mutable.leaf_mutables(is_leaf)

    def mutate(self, model: GraphModelSpace, sample: Sample) -> list[Any]:
        value = self.mutable.freeze(sample)
        self.apply_value(model, value, sample)
        return [value]

    def apply_value(self, model: GraphModelSpace, value: Any, sample: Sample) -> None:
        raise NotImplementedError


class _NodeTargets:
    """Mixin: the (graph, node) pairs a mutator edits."""

    targets: list[tuple[str, str]]

    @property
    def graphs(self) -> set[str] | None:
        return {g for g, _ in self.targets}

    def target_nodes(self, model: GraphModelSpace) -> Iterator[tuple[Graph, Node]]:
        for graph_name, node_name in self.targets:
            graph = model.graphs[graph_name]
            node = graph.hidden_nodes.get(node_name)
            if node is None:
                raise GraphFormatError(f"{type(self).__name__}: node {node_name!r} is gone from graph {graph_name!r}.")
            yield graph, node


class LayerChoiceMutator(_NodeTargets, StationaryMutator):
    def __init__(self, mutable: Mutable, targets: list[tuple[str, str]], candidate_mutables: list[Mutable]) -> None:
        super().__init__(mutable)
        self.targets, self.candidate_mutables = targets, candidate_mutables

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        yield from self.mutable.leaf_mutables(is_leaf)
        for m in self.candidate_mutables:  # value choices inside candidate modules
            yield from m.leaf_mutables(is_leaf)

    def apply_value(self, model: GraphModelSpace, value: Any, sample: Sample) -> None:
        for _, node in self.target_nodes(model):
            annotation = node.mutation or {}
            chosen = next((c for c in annotation.get("candidates", []) if c[0] == value and type(c[0]) is type(value)),
                          None) or next((c for c in annotation.get("candidates", []) if c[0] == value), None)
            if chosen is None:
                raise GraphFormatError(f"LayerChoice {self.label!r} has no candidate {value!r} at node {node.name!r}.")
            _, operation, python_name = chosen
            node.operation = operation.freeze(sample) if operation.has_mutables() else operation
            node.python_name, node.mutation = python_name, None
            rename = (join_path(annotation["path"], str(value)), annotation["path"])
            if rename not in model.renames:
                model.renames.append(rename)


class InputChoiceMutator(_NodeTargets, StationaryMutator):
    def __init__(self, mutable: Mutable, targets: list[tuple[str, str]]) -> None:
        super().__init__(mutable)
        self.targets = targets

    def apply_value(self, model: GraphModelSpace, value: Any, sample: Sample) -> None:
        chosen = [value] if isinstance(value, int) else list(value)
        for graph, node in self.target_nodes(model):
            rewire_input_choice(graph, node, chosen, (node.mutation or {}).get("reduction", "sum"))


def _fn(path: str) -> FunctionOp:
    return FunctionOp(target=Ref(path))


def rewire_input_choice(graph: Graph, node: Node, chosen: list[int], reduction: str) -> None:
    """Replace an InputChoice node by plain operations on its chosen inputs."""
    incoming = {e.tail_slot: e for e in graph.incoming_edges(node)}

    def ref_of_slot(slot: Slot) -> NodeRef:
        edge = incoming[slot.index]
        return edge.head, edge.head_slot

    if len(node.args) == 1 and isinstance(node.args[0], (list, tuple)):
        items: list[Any] = [node.args[0][i] for i in chosen]
        refs: list[Any] = [ref_of_slot(v) if isinstance(v, Slot) else ("const", v) for v in items]
    else:  # the candidates arrive as one list-valued input: index it
        source = ref_of_slot(node.args[0])
        refs = []
        for i in chosen:
            pick = graph.add_node(f"{node.name}_{i}", _fn("operator:getitem"), (Slot(0), i), at=node)
            graph.add_edge(source, (pick, 0))
            refs.append((pick, None))
    node.mutation, node.python_name = None, None
    for edge in incoming.values():
        graph.del_edge(edge)
    tensors = [r for r in refs if r[0] != "const"]
    if len(tensors) == 1 and len(refs) == 1 and reduction != "none":  # bypass: consumers read the chosen input
        for edge in graph.outgoing_edges(node):
            graph.add_edge(refs[0], (edge.tail, edge.tail_slot))
        graph.remove_node(node)
        return
    if len(tensors) != len(refs) or not refs:  # constants or nothing chosen: reduce as the space does
        slots, args = _connect(graph, node, [r for r in refs if r[0] != "const"], 0), []
        it = iter(slots)
        for r in refs:
            args.append(r[1] if r[0] == "const" else next(it))
        node.operation, node.args, node.kwargs = _fn("nasflow.nn.choice:reduce_inputs"), (args, reduction), {}
        return
    if reduction in ("sum", "mean"):
        acc = refs[0]
        last = refs[1:] if reduction == "mean" else refs[1:-1]
        for k, ref in enumerate(last):
            add = graph.add_node(f"{node.name}_add{k}", _fn("operator:add"), (Slot(0), Slot(1)), at=node)
            graph.add_edge(acc, (add, 0))
            graph.add_edge(ref, (add, 1))
            acc = (add, None)
        if reduction == "sum":
            node.operation, node.args = _fn("operator:add"), tuple(_connect(graph, node, [acc, refs[-1]], 0))
        else:
            node.operation, node.args = _fn("operator:truediv"), (_connect(graph, node, [acc], 0)[0], len(refs))
        node.kwargs = {}
        return
    slots = _connect(graph, node, refs, 0)
    if reduction == "concat":
        node.operation, node.args, node.kwargs = _fn("torch:cat"), (slots,), {"dim": 1}
    else:  # 'none' with several inputs: the list itself
        node.operation, node.args, node.kwargs = _fn("builtins:list"), (slots,), {}


def _connect(graph: Graph, node: Node, refs: list[Any], first: int) -> list[Slot]:
    for i, ref in enumerate(refs):
        graph.add_edge(ref, (node, first + i))
    return [Slot(first + i) for i in range(len(refs))]


class ParameterChoiceMutator(_NodeTargets, Mutator):
    """Value choices in one node's operation parameters (e.g. ``MutableConv2d(kernel_size=choice(...))``)."""

    def __init__(self, graph: str, node: str, mutables: list[Mutable]) -> None:
        super().__init__(label=None)
        self.targets, self.mutables = [(graph, node)], mutables

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        for m in self.mutables:
            yield from m.leaf_mutables(is_leaf)

    def mutate(self, model: GraphModelSpace, sample: Sample) -> list[Any]:
        for _, node in self.target_nodes(model):
            node.operation = node.operation.freeze(sample)
        return [m.freeze(sample) for m in self.mutables]


class _GraphTarget(Mutator):
    def __init__(self, graph: str, mutable_label: str | None) -> None:
        super().__init__(label=mutable_label)
        self.graph = graph

    @property
    def graphs(self) -> set[str] | None:
        return {self.graph}


class RepeatMutator(_GraphTarget):
    def __init__(self, graph: str, depth: Mutable, chain: list[str], label: str | None) -> None:
        super().__init__(graph, label)
        self.depth, self.chain = depth, chain

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        return self.depth.leaf_mutables(is_leaf)

    def mutate(self, model: GraphModelSpace, sample: Sample) -> list[Any]:
        depth = int(self.depth.freeze(sample))
        graph = model.graphs[self.graph]
        for name in self.chain[depth:]:
            graph.remove_node(graph.hidden_nodes[name])
        graph.edges = [e for e in graph.edges if e.tail is not graph.output_node]
        head = (graph.hidden_nodes[self.chain[depth - 1]], None) if depth > 0 else (graph.input_node, 0)
        graph.add_edge(head, (graph.output_node, 0))
        graph.mutation = None
        return [depth]


class CellMutator(_GraphTarget):
    def __init__(self, graph: str, annotation: dict[str, Any]) -> None:
        super().__init__(graph, annotation.get("label"))
        self.annotation = annotation

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        for entry in self.annotation["inputs"]:
            yield from entry["mutable"].leaf_mutables(is_leaf)

    def mutate(self, model: GraphModelSpace, sample: Sample) -> list[Any]:
        graph, spec = model.graphs[self.graph], self.annotation

        def ref(entry: list[Any]) -> NodeRef:
            name, slot = entry
            return graph.get_node_by_name(name), slot  # type: ignore[return-value]

        chosen: list[int] = []
        values: list[Any] = []
        for entry in spec["inputs"]:
            values.append(entry["mutable"].freeze(sample))
            index = values[-1][0]  # an InputChoice's value is a list (NNI)
            chosen.append(index)
            op_node = graph.hidden_nodes[entry["node"]]
            for edge in graph.incoming_edges(op_node):
                graph.del_edge(edge)
            graph.add_edge(ref(entry["candidates"][index]), (op_node, 0))
        if spec["merge_op"] == "loose_end":
            p, states = spec["num_predecessors"], spec["states"]
            outputs = [k for k in range(p, len(states)) if k not in set(chosen)]
            merge = graph.hidden_nodes[spec["merge"]]
            for edge in graph.incoming_edges(merge):
                graph.del_edge(edge)
            merge.args = (_connect(graph, merge, [ref(states[k]) for k in outputs], 0),)
        graph.mutation = None
        return values


class MutatorSequence(Mutable):
    """All mutators of a space, applied in order to one copy: ``freeze(sample)`` gives a model."""

    def __init__(self, mutators: Iterable[Mutator]) -> None:
        self.mutators = list(mutators)
        self._model: GraphModelSpace | None = None

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        for mutator in self.mutators:
            yield from mutator.leaf_mutables(is_leaf)

    @property
    def graphs(self) -> set[str] | None:
        touched: set[str] = set()
        for mutator in self.mutators:
            if mutator.graphs is None:
                return None
            touched |= mutator.graphs
        return touched

    def bind_model(self, model: GraphModelSpace) -> MutatorSequence:
        self._model = model
        return self

    def freeze(self, sample: Sample) -> GraphModelSpace:
        if self._model is None:
            raise RuntimeError("MutatorSequence is not bound to a model; call bind_model(model) first.")
        return self.apply(self._model, sample)

    def apply(self, model: GraphModelSpace, sample: Sample) -> GraphModelSpace:
        """The model for ``sample``: mutated copy, unreachable graphs dropped, history recorded.

        Repeats are cut last: a choice inside a block the depth drops still names its node until then.
        """
        new = model._copy(self.graphs)
        for mutator in sorted(self.mutators, key=lambda m: isinstance(m, RepeatMutator)):
            new.history.append(Mutation(type(mutator).__name__, mutator.label, mutator.mutate(new, sample)))
        reachable = set(new.reachable_graphs())
        new.graphs = {name: g for name, g in new.graphs.items() if name in reachable}
        new._mutators, new._labels, new.extra_mutables = MutatorSequence([]), None, []
        new.sample = {k: sample[k] for k in model.simplify() if k in sample}
        new.evaluator = model.frozen_evaluator(sample)
        new.status = ModelStatus.Frozen
        return new

    def __len__(self) -> int:
        return len(self.mutators)

    def __iter__(self) -> Iterator[Mutator]:
        return iter(self.mutators)

    def __repr__(self) -> str:
        return f"MutatorSequence({self.mutators!r})"


def mutators_of(model: GraphModelSpace) -> MutatorSequence:
    """The mutators of every mutation point annotated in ``model``'s IR."""
    mutators: list[Mutator] = []
    by_label: dict[tuple[str, str], Any] = {}
    for graph in model.graphs.values():
        annotation = graph.mutation
        if annotation is not None and annotation["type"] == "repeat":
            mutators.append(RepeatMutator(graph.name, annotation["depth"], annotation["chain"],
                                          annotation.get("label")))
        elif annotation is not None and annotation["type"] == "cell":
            mutators.append(CellMutator(graph.name, annotation))
        for node in graph.hidden_nodes.values():
            kind = (node.mutation or {}).get("type")
            if kind in ("layer_choice", "input_choice"):
                mutable = node.mutation["mutable"]  # type: ignore[index]
                key = (kind, mutable.label)
                if key not in by_label:
                    by_label[key] = (LayerChoiceMutator(mutable, [], []) if kind == "layer_choice"
                                     else InputChoiceMutator(mutable, []))
                    mutators.append(by_label[key])
                by_label[key].targets.append((graph.name, node.name))
                if kind == "layer_choice":
                    by_label[key].candidate_mutables.extend(
                        v for _, op, _ in node.mutation["candidates"]  # type: ignore[index]
                        for v in iter_values(op.parameters) if isinstance(v, Mutable))
                continue
            if kind is not None:
                raise GraphFormatError(f"Node {node.name!r} of graph {graph.name!r} has unknown mutation {kind!r}.")
            if node.operation.has_mutables():
                found = [v for v in iter_values(node.operation.parameters) if isinstance(v, Mutable)]
                mutators.append(ParameterChoiceMutator(graph.name, node.name, found))
    return MutatorSequence(mutators).bind_model(model)
