"""``GraphModelSpace``: a model space (or one model) in the graph format, as named graphs of IR.

Conversion (``convert``) builds it from a user's space; mutators (``mutator``) freeze it into one
model; code generation (``codegen``) makes the model's PyTorch source and module. Its JSON
(``dump`` / ``load``) is what the store keeps and trials receive: plain data, safe to load.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from torch import nn

from nasflow.mutable import LabeledMutable, Mutable, Sample
from nasflow.mutable.base import IsLeaf
from nasflow.space.base import ExecutableModelSpace
from nasflow.space.metrics import Metrics, ModelStatus

from .errors import GraphFormatError
from .ir import Graph, no_gc_pauses
from .operations import GRAPH_NAME, Cell
from .refs import Ref, is_library
from .serialize import IRReader, IRWriter

__all__ = ["GraphModelSpace", "FORMAT_VERSION"]

FORMAT_VERSION = 2


class GraphModelSpace(ExecutableModelSpace):
    """A model space (or, frozen, one model) as graph IR.

    ``graphs[root_name]`` is the top-level module; other graphs are its traced submodules, Repeat
    chains, Cells and LayerChoice candidates. ``renames`` maps module paths of the space to those
    of the frozen model (a LayerChoice collapses into its chosen candidate, a Repeat into a
    Sequential), which is what lets weights be copied between the two.
    """

    def __init__(self, *, evaluator: Any = None) -> None:
        self.graphs: dict[str, Graph] = {}
        self.root_name = "_model"
        self.space_type: str | None = None
        self.evaluator = evaluator
        self.sample: Sample | None = None
        self.status = ModelStatus.Initialized
        self.model_id: int | None = None
        self._metrics: Metrics | None = None
        self.history: list[Any] = []
        self.extra_mutables: list[Mutable] = []
        self.renames: list[tuple[str, str]] = []
        self._mutators: Any = None
        self._labels: dict[str, LabeledMutable] | None = None
        self._main_objects: dict[str, Any] = {}

    # ---- format API -------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model_space: nn.Module, evaluator: Any = None, **kwargs: Any) -> GraphModelSpace:
        """Convert ``model_space`` with torch.fx, or refuse it with a ``GraphConversionError`` naming the
        module and a fix. ``dummy_input`` (a tensor, or a tuple of the positional arguments of the
        space's forward) runs the space once (materializing lazy modules, checking that LayerChoice
        candidates agree on shapes), fixes the call when forward() branches on an optional argument,
        and verifies the conversion: the default sample and a few random ones must compute what the
        simplified format's models compute under the same weights (see ``verify``)."""
        from .convert import convert_model_space

        unknown = set(kwargs) - {"dummy_input"}
        if unknown:
            raise TypeError(f"GraphModelSpace.from_model got unknown options {sorted(unknown)}; it takes dummy_input.")
        return convert_model_space(model_space, evaluator, kwargs.get("dummy_input"), cls)

    @property
    def root_graph(self) -> Graph:
        return self.graphs[self.root_name]

    @property
    def mutators(self) -> Any:
        """The ``MutatorSequence`` of this space's mutation points (derived from the IR once)."""
        if self._mutators is None:
            from .mutator import mutators_of

            self._mutators = mutators_of(self)
        return self._mutators

    def _space_leaf_mutables(self, is_leaf: IsLeaf) -> Iterator[LabeledMutable]:
        yield from self.mutators.leaf_mutables(is_leaf)
        for mutable in self.extra_mutables:
            yield from mutable.leaf_mutables(is_leaf)

    def simplify(self, is_leaf: IsLeaf = None) -> dict[str, LabeledMutable]:
        if is_leaf is not None or isinstance(self.evaluator, Mutable):
            return super().simplify(is_leaf)
        if self._labels is None:
            self._labels = super().simplify()
        return self._labels

    def _freeze_model(self, sample: Sample) -> GraphModelSpace:
        return self.mutators.apply(self, sample)

    def _require_model(self, what: str) -> None:
        if self.sample is None and self.simplify():
            raise RuntimeError(f"A space has no single {what}; freeze it with a sample first (space.freeze(sample)).")

    def executable_model(self) -> nn.Module:
        """The torch module: generated source, executed, root class instantiated."""
        from .codegen import instantiate

        self._require_model("executable model")
        return instantiate(self)

    def code(self, *, embed_main: bool = False) -> str:
        """Readable, standalone PyTorch source of this frozen model (``export_top_models(formatter='code')``).

        Classes and functions defined in ``__main__`` cannot be imported by another process; they
        are an error unless ``embed_main=True``, which embeds them with cloudpickle.
        """
        from .codegen import generate_code

        self._require_model("source code")
        return generate_code(self, main="embed" if embed_main else "error").source

    # ---- copying ----------------------------------------------------------------------------
    def _copy(self, graphs_to_copy: set[str] | None = None) -> GraphModelSpace:
        """A new model sharing the IR, except the graphs named (None: all) which are copied."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.graphs = {name: g.copy() if graphs_to_copy is None or name in graphs_to_copy else g
                      for name, g in self.graphs.items()}
        new.history, new.renames, new.extra_mutables = list(self.history), list(self.renames), list(self.extra_mutables)
        new.sample, new.status, new.model_id, new._metrics = None, ModelStatus.Initialized, None, None
        new._mutators, new._labels = None, None  # derived from the IR, which the caller is about to edit
        return new

    def fork(self) -> GraphModelSpace:
        """A deep copy of the IR that can be edited freely (frozen models share unedited graphs)."""
        new = self._copy(None)
        new.sample, new.status = self.sample, self.status
        return new

    def reachable_graphs(self) -> list[str]:
        """Names of the graphs the root calls, directly or not, root first."""
        seen, stack = [self.root_name], [self.root_name]
        while stack:
            for node in self.graphs[stack.pop()].hidden_nodes.values():
                if not isinstance(node.operation, Cell):
                    continue
                name = node.operation.graph_name
                if name not in seen:
                    if name not in self.graphs:
                        raise GraphFormatError(f"Node {node.name!r} calls graph {name!r}, which the model lacks.")
                    seen.append(name)
                    stack.append(name)
        return seen

    # ---- JSON -------------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        """The IR as JSON-compatible data: no pickle, functions and classes by path. ``user_refs``
        lists the user's own classes and functions it names, which only training imports."""
        return json.loads(self.dump_json())

    def to_payload(self) -> bytes:
        """What the experiment store keeps of a graph-format model: ``dump()``'s JSON, as UTF-8."""
        return self.dump_json().encode()

    def dump_json(self) -> str:
        """``dump()`` as JSON text, assembled from each graph's cached text."""
        writer = IRWriter()
        graphs = ", ".join(f"{json.dumps(name)}: {graph.dump_json(writer)}" for name, graph in self.graphs.items())
        head = {
            "format": "nasflow.graph",
            "version": FORMAT_VERSION,
            "root": self.root_name,
            "space_type": self.space_type,
            "status": self.status.value,
            "sample": writer.value(self.sample),
        }
        tail = {
            "extra_mutables": [writer.value(m) for m in self.extra_mutables],
            "renames": [list(r) for r in self.renames],
            "history": [m.dump(writer) for m in self.history],
            "user_refs": [],
        }
        tail["user_refs"] = sorted(ref.path for ref in writer.refs if not is_library(ref))
        return f'{json.dumps(head)[:-1]}, "graphs": {{{graphs}}}, {json.dumps(tail)[1:]}'

    @classmethod
    def load(cls, data: dict[str, Any] | str, evaluator: Any = None) -> GraphModelSpace:
        """The model described by ``dump()`` output (or its JSON text).

        Safe on untrusted input: nothing is unpickled or imported, and IR that names anything outside
        the allow-list (see ``refs``), or names and values that would not be plain code, is refused.
        """
        with no_gc_pauses():
            if isinstance(data, (str, bytes)):
                try:
                    data = json.loads(data)
                except ValueError as err:
                    raise GraphFormatError(f"Not graph IR JSON: {err}") from err
            if not isinstance(data, dict) or data.get("format") != "nasflow.graph":
                raise GraphFormatError("Not nasflow graph IR JSON: expected an object with format='nasflow.graph'.")
            if data.get("version") != FORMAT_VERSION:
                raise GraphFormatError(f"Graph IR version {data.get('version')!r} is not supported "
                                       f"(this nasflow reads version {FORMAT_VERSION}).")
            model = cls(evaluator=evaluator)
            cls._load_into(model, data, IRReader(data.get("user_refs", [])))
        return model

    @staticmethod
    def _load_into(model: GraphModelSpace, data: dict[str, Any], reader: IRReader) -> None:
        from .mutator import Mutation

        try:
            model.root_name, model.space_type = data["root"], data.get("space_type")
            if model.space_type is not None:
                Ref(model.space_type)
            graphs = data["graphs"]
            if not isinstance(graphs, dict) or not all(isinstance(n, str) and GRAPH_NAME.fullmatch(n) for n in graphs):
                raise GraphFormatError("Graph names in IR JSON must be identifiers.")
            model.graphs = {name: Graph.load(name, g, reader) for name, g in graphs.items()}
            if model.root_name not in model.graphs:
                raise GraphFormatError(f"The root graph {model.root_name!r} is missing from the IR JSON.")
            model.reachable_graphs()  # every Cell calls a graph of the model
            model.extra_mutables = [reader.value(m, "extra_mutables") for m in data.get("extra_mutables", [])]
            model.renames = [(a, b) for a, b in data.get("renames", [])]
            if not all(isinstance(part, str) for r in model.renames for part in r):
                raise GraphFormatError("Renames in IR JSON must be pairs of module paths.")
            model.history = [Mutation.load(m, reader) for m in data.get("history", [])]
            model.sample = reader.value(data.get("sample"), "sample")
            model.status = ModelStatus(data.get("status", "initialized"))
        except GraphFormatError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise GraphFormatError(f"Malformed graph IR JSON: {err!r}") from err

    def __getstate__(self) -> dict[str, Any]:
        """Compact: the IR as JSON text, the evaluator, and the objects from ``__main__`` the IR names
        (pickled by the caller's pickler: trials travel with cloudpickle, which sends them by value)."""
        from .codegen import main_objects

        return {"ir": self.dump_json(), "evaluator": self.evaluator, "metrics": self._metrics,
                "model_id": self.model_id, "main": main_objects(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        loaded = type(self).load(state["ir"], state["evaluator"])
        self.__dict__.update(loaded.__dict__)
        self._metrics, self.model_id = state["metrics"], state["model_id"]
        self._main_objects = dict(state["main"] or {})
