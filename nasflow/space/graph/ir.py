"""Graph IR: a ``Graph`` holds ``Node``s and ``Edge``s (a ``GraphModelSpace`` holds named graphs).

A node computes its ``operation`` on the values of its incoming edges. How those values are passed
is the node's call template (``args`` / ``kwargs`` holding ``Slot(i)`` for incoming edge ``i``),
which is what lets ``torch.cat([a, b], dim=1)`` or a tuple output be one node. A ``Cell``
operation calls another graph of the model: user submodules are sub-graphs. Mutation points are
annotations (``node.mutation``, ``graph.mutation``) from which the mutators are derived, so the IR
alone (its JSON, see ``dump``/``load``) describes the whole space or model.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import json
from collections.abc import Iterator
from typing import Any

from nasflow.mutable import Mutable

from .errors import GraphFormatError
from .operations import Cell, InputsOp, Operation, OutputsOp, check_node_call
from .refs import Ref
from .serialize import IRReader, IRWriter, check_call

__all__ = ["Graph", "Node", "Edge", "no_gc_pauses"]

NodeRef = tuple["Node", int | None]


@contextlib.contextmanager
def no_gc_pauses() -> Iterator[None]:
    """Reading IR and building its module allocate thousands of objects that all live on. Cyclic
    garbage collections triggered meanwhile find nothing to free, yet in a process holding torch a
    full one scans millions of objects (hundreds of ms in a fresh trial worker): hold them off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Node:
    """One operation in a graph. ``python_name``: the module attribute path it comes from, relative
    to its graph's module in the space (None for functions). ``id``: its position in program order."""

    __slots__ = ("graph", "id", "name", "operation", "args", "kwargs", "python_name", "mutation")

    def __init__(self, graph: Graph, node_id: int, name: str, operation: Operation, args: tuple[Any, ...] = (),
                 kwargs: dict[str, Any] | None = None, python_name: str | None = None) -> None:
        init = object.__setattr__  # no cache to invalidate yet: the graph does that when the node is added
        init(self, "graph", graph)
        init(self, "id", node_id)
        init(self, "name", name)
        init(self, "operation", operation)
        init(self, "args", tuple(args))
        init(self, "kwargs", dict(kwargs or {}))
        init(self, "python_name", python_name)
        init(self, "mutation", None)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name != "graph":
            self.graph._touch()

    @property
    def label(self) -> str | None:
        """The label of the choice this node is a mutation point of, if any."""
        mutable = (self.mutation or {}).get("mutable")
        return getattr(mutable, "label", None)

    @property
    def incoming_edges(self) -> list[Edge]:
        return self.graph.incoming_edges(self)

    @property
    def outgoing_edges(self) -> list[Edge]:
        return self.graph.outgoing_edges(self)

    @property
    def predecessors(self) -> list[Node]:
        return list(dict.fromkeys(e.head for e in self.incoming_edges))

    @property
    def successors(self) -> list[Node]:
        return list(dict.fromkeys(e.tail for e in self.outgoing_edges))

    @property
    def cell(self) -> str | None:
        """The sub-graph this node calls, if it is a ``Cell``."""
        return self.operation.graph_name if isinstance(self.operation, Cell) else None

    def next_slot(self) -> int:
        return max((e.tail_slot for e in self.incoming_edges), default=-1) + 1

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.operation.type}, python_name={self.python_name!r})"


class Edge:
    """The value of ``head`` (output ``head_slot``: an input index for the input node, else None)
    fed to input ``tail_slot`` of ``tail``."""

    __slots__ = ("head", "head_slot", "tail", "tail_slot")

    def __init__(self, head: NodeRef, tail: tuple[Node, int]) -> None:
        (self.head, self.head_slot), (self.tail, self.tail_slot) = head, tail

    def __repr__(self) -> str:
        return f"Edge({self.head.name}[{self.head_slot}] -> {self.tail.name}[{self.tail_slot}])"


class Graph:
    """A traced module (or a built Repeat / Cell): input node, hidden nodes, output node, edges."""

    def __init__(self, name: str, space_path: str = "", module_type: str | None = None) -> None:
        self.name, self.space_path, self.module_type = name, space_path, module_type
        self._next_id = 0
        self.input_node = self._new_node("_inputs", InputsOp(signature=[]))
        self.output_node = self._new_node("_outputs", OutputsOp(), (None,))
        self.hidden_nodes: dict[str, Node] = {}
        self.edges: list[Edge] = []
        self.mutation: dict[str, Any] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__[name] = value
        if name not in ("_codegen", "_json"):
            self._touch()

    def _touch(self) -> None:
        """Forget cached generated code and JSON: the graph changed (edit graphs through their methods)."""
        self.__dict__.pop("_codegen", None)
        self.__dict__.pop("_json", None)

    # ---- building ---------------------------------------------------------------------------
    def _new_node(self, name: str, operation: Operation, args: tuple[Any, ...] = (),
                  kwargs: dict[str, Any] | None = None, python_name: str | None = None) -> Node:
        node = Node(self, self._next_id, name, operation, args, kwargs, python_name)
        self._next_id += 1
        return node

    def unique_name(self, name: str) -> str:
        if name not in self.hidden_nodes and name not in ("_inputs", "_outputs"):
            return name
        index = 1
        while f"{name}_{index}" in self.hidden_nodes:
            index += 1
        return f"{name}_{index}"

    def add_node(self, name: str, operation: Operation, args: tuple[Any, ...] = (),
                 kwargs: dict[str, Any] | None = None, python_name: str | None = None, *,
                 at: Node | None = None) -> Node:
        """A new node, placed in program order at the end, or ``at`` an existing node's position (for
        nodes that take over its computation): in-place operations make that order matter."""
        node = self._new_node(self.unique_name(name), operation, args, kwargs, python_name)
        if at is not None:
            object.__setattr__(node, "id", at.id)
        self.hidden_nodes[node.name] = node
        self._touch()
        return node

    def add_edge(self, head: NodeRef, tail: tuple[Node, int]) -> Edge:
        if head[0] is self.output_node or tail[0] is self.input_node:
            raise GraphFormatError(f"Graph {self.name!r}: edges go from the input node and into the output node.")
        edge = Edge(head, tail)
        self.edges.append(edge)
        self._touch()
        return edge

    def del_edge(self, edge: Edge) -> None:
        self.edges.remove(edge)
        self._touch()

    def remove_node(self, node: Node) -> None:
        """Remove ``node`` and every edge touching it."""
        del self.hidden_nodes[node.name]
        self._touch()
        self.edges = [e for e in self.edges if e.head is not node and e.tail is not node]

    def insert_node_on_edge(self, edge: Edge, name: str, operation: Operation, python_name: str | None = None) -> Node:
        """Put a one-input node (called as ``op(Slot(0))``) in the middle of ``edge``."""
        node = self.add_node(name, operation, (_slot(0),), python_name=python_name)
        self.del_edge(edge)
        self.add_edge((edge.head, edge.head_slot), (node, 0))
        self.add_edge((node, None), (edge.tail, edge.tail_slot))
        return node

    # ---- looking up -------------------------------------------------------------------------
    @property
    def nodes(self) -> list[Node]:
        return [self.input_node, *self.hidden_nodes.values(), self.output_node]

    def incoming_edges(self, node: Node) -> list[Edge]:
        return sorted((e for e in self.edges if e.tail is node), key=lambda e: e.tail_slot)

    def outgoing_edges(self, node: Node) -> list[Edge]:
        return [e for e in self.edges if e.head is node]

    def get_node_by_name(self, name: str) -> Node | None:
        if name == "_inputs":
            return self.input_node
        if name == "_outputs":
            return self.output_node
        return self.hidden_nodes.get(name)

    def get_nodes_by_label(self, label: str) -> list[Node]:
        return [n for n in self.hidden_nodes.values() if n.label == label]

    def get_nodes_by_type(self, operation_type: str) -> list[Node]:
        return [n for n in self.hidden_nodes.values() if n.operation.type == operation_type]

    def get_node_by_python_name(self, python_name: str) -> Node | None:
        return next((n for n in self.hidden_nodes.values() if n.python_name == python_name), None)

    def topo_sort(self) -> list[Node]:
        """Hidden nodes, every node after its inputs; ties keep program order (the traced order), which
        keeps in-place operations where the user's code has them."""
        indegree = {n.name: 0 for n in self.hidden_nodes.values()}
        succ: dict[str, list[Node]] = {name: [] for name in indegree}
        for e in self.edges:
            if e.tail.name in indegree and e.head.name in indegree:
                indegree[e.tail.name] += 1
                succ[e.head.name].append(e.tail)
        heap = [(n.id, n.name) for n in self.hidden_nodes.values() if indegree[n.name] == 0]
        heapq.heapify(heap)
        order: list[Node] = []
        while heap:
            _, name = heapq.heappop(heap)
            node = self.hidden_nodes[name]
            order.append(node)
            for nxt in succ[name]:
                indegree[nxt.name] -= 1
                if indegree[nxt.name] == 0:
                    heapq.heappush(heap, (nxt.id, nxt.name))
        if len(order) != len(self.hidden_nodes):
            stuck = sorted(set(self.hidden_nodes) - {n.name for n in order})
            raise GraphFormatError(f"Graph {self.name!r} has a cycle through nodes {stuck}.")
        return order

    # ---- copying and JSON -------------------------------------------------------------------
    def copy(self) -> Graph:
        """A copy whose nodes and edges can be edited; operations are shared (they are immutable)."""
        new = Graph.__new__(Graph)
        new.name, new.space_path, new.module_type = self.name, self.space_path, self.module_type
        new._next_id = self._next_id
        new.mutation = self.mutation
        mapping: dict[int, Node] = {}
        for node in self.nodes:
            twin = Node(new, node.id, node.name, node.operation, node.args, node.kwargs, node.python_name)
            object.__setattr__(twin, "mutation", node.mutation)
            mapping[id(node)] = twin
        new.input_node, new.output_node = mapping[id(self.input_node)], mapping[id(self.output_node)]
        new.hidden_nodes = {name: mapping[id(n)] for name, n in self.hidden_nodes.items()}
        new.edges = [Edge((mapping[id(e.head)], e.head_slot), (mapping[id(e.tail)], e.tail_slot)) for e in self.edges]
        return new

    def dump_json(self, writer: IRWriter | None = None) -> str:
        """The graph as JSON text (cached until it changes: frozen models share untouched graphs)."""
        cached = self.__dict__.get("_json")
        if cached is None:
            own = IRWriter()
            cached = self.__dict__["_json"] = (json.dumps(self.dump(own)), frozenset(own.refs))
        if writer is not None:
            writer.refs |= cached[1]
        return cached[0]

    def dump(self, writer: IRWriter | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "space_path": self.space_path,
            "module_type": self.module_type,
            "inputs": self.input_node.operation.dump(writer)["parameters"]["signature"],
            "output": writer.value(self.output_node.args[0]),
            "nodes": [],
            "edges": [[e.head.name, e.head_slot, e.tail.name, e.tail_slot] for e in self.edges],
        }
        for node in self.hidden_nodes.values():
            try:
                out["nodes"].append(_dump_node(node, writer))
            except GraphFormatError as err:
                where = f"module '{self.space_path}'" if self.space_path else "the space"
                raise GraphFormatError(f"Node {node.name!r} of graph {self.name!r} ({where}): {err}") from err
        if self.mutation is not None:
            out["mutation"] = _dump_annotation(self.mutation, writer)
        return out

    @staticmethod
    def load(name: str, data: dict[str, Any], reader: IRReader) -> Graph:
        """The graph of ``dump()`` output, every name and value checked (see ``Operation.check``).
        Built directly (a new graph has no cache for the editing methods to drop)."""
        try:
            module_type = data.get("module_type")
            if module_type is not None:
                Ref(module_type)  # a path, only ever used to name the generated class
            if not isinstance(data["space_path"], str):
                raise GraphFormatError(f"Graph {name!r}: space_path must be a string.")
            graph = Graph(name, data["space_path"], module_type)
            graph.input_node.operation = Operation.load(
                {"type": "_inputs", "parameters": {"signature": data["inputs"]}}, reader, f"inputs of graph {name!r}")
            graph.output_node.args = (reader.value(data["output"], f"output of graph {name!r}"),)
            for entry in data["nodes"]:
                node_name = entry["name"]
                where = f"node {node_name!r} of graph {name!r}"
                if not isinstance(node_name, str) or not isinstance(entry.get("python_name", ""), str):
                    raise GraphFormatError(f"{where}: node names and python names must be strings.")
                args, kwargs = reader.value(entry.get("args", []), where), reader.value(entry.get("kwargs", {}), where)
                if not isinstance(args, list):
                    raise GraphFormatError(f"{where}: node arguments must be a list.")
                check_call(tuple(args), kwargs, where)
                if node_name in graph.hidden_nodes or node_name in ("_inputs", "_outputs"):
                    raise GraphFormatError(f"Graph {name!r} has two nodes named {node_name!r}.")
                node = graph._new_node(node_name, Operation.load(entry["operation"], reader, where), tuple(args),
                                       kwargs, entry.get("python_name"))
                graph.hidden_nodes[node_name] = node
                check_node_call(node.operation, node.args, node.kwargs, where)
                if "mutation" in entry:
                    object.__setattr__(node, "mutation", _load_annotation(entry["mutation"], reader, where))
            for head, head_slot, tail, tail_slot in data["edges"]:
                h, t = graph.get_node_by_name(head), graph.get_node_by_name(tail)
                if h is None or t is None:
                    raise GraphFormatError(f"Graph {name!r}: edge {head!r} -> {tail!r} names an unknown node.")
                if not (head_slot is None or _index(head_slot)) or not _index(tail_slot) \
                        or h is graph.output_node or t is graph.input_node:
                    raise GraphFormatError(f"Graph {name!r}: edge {head!r} -> {tail!r} is not a valid edge.")
                graph.edges.append(Edge((h, head_slot), (t, tail_slot)))
            if "mutation" in data:
                graph.mutation = _load_annotation(data["mutation"], reader, f"graph {name!r}")
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            if isinstance(err, GraphFormatError):
                raise
            raise GraphFormatError(f"Malformed IR JSON for graph {name!r}: {err!r}") from err
        return graph

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.hidden_nodes)} nodes, {len(self.edges)} edges)"


def _slot(index: int) -> Any:
    from .values import Slot

    return Slot(index)


def _index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _dump_node(node: Node, writer: IRWriter) -> dict[str, Any]:
    out: dict[str, Any] = {"name": node.name, "operation": node.operation.dump(writer)}
    if node.args:
        out["args"] = writer.value(list(node.args))
    if node.kwargs:
        out["kwargs"] = writer.value(node.kwargs)
    if node.python_name is not None:
        out["python_name"] = node.python_name
    if node.mutation is not None:
        out["mutation"] = _dump_annotation(node.mutation, writer)
    return out


_ANNOTATIONS = {"layer_choice": ("mutable",), "input_choice": ("mutable",), "repeat": ("depth",), "cell": ()}


def _dump_annotation(annotation: dict[str, Any], writer: IRWriter) -> dict[str, Any]:
    out = {k: writer.value(v) for k, v in annotation.items() if k != "candidates"}
    if "candidates" in annotation:
        out["candidates"] = [[writer.value(key), op.dump(writer), name] for key, op, name in annotation["candidates"]]
    return out


def _load_annotation(data: dict[str, Any], reader: IRReader, where: str) -> dict[str, Any]:
    out = {k: reader.value(v, where) for k, v in data.items() if k != "candidates"}
    kind = out.get("type")
    if kind not in _ANNOTATIONS or not all(isinstance(out.get(k), Mutable) for k in _ANNOTATIONS[kind]):
        raise GraphFormatError(f"{where}: malformed mutation annotation of type {out.get('type')!r}.")
    if "candidates" in data:
        out["candidates"] = [(reader.value(key, where), Operation.load(op, reader, where), name)
                             for key, op, name in data["candidates"]]
    return out
