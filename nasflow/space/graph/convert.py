"""Conversion of a model space into graph IR with torch.fx.

Each module becomes one of:
- a basic unit (plain ``torch.nn`` module, ``ParametrizedModule``, ``_nni_basic_unit``): one
  ``module`` node holding its class and init arguments (which may hold mutables: value choices);
- a LayerChoice / InputChoice: a node annotated as a mutation point;
- a Repeat or Cell: a sub-graph built here (a chain of blocks; a DAG of choices);
- any other module: a sub-graph traced with torch.fx (see ``trace``), whose submodules are treated
  the same way (containers like ``nn.Sequential`` are traced through).

A module is traced for the way it is called: optional arguments a call leaves out are fixed at
their defaults. What one graph cannot represent (a module called in two ways, tensors shared by
two modules, an optional argument of the space's own forward whose use is unknown) is refused here.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from nasflow.mutable import Constraint, Mutable
from nasflow.nn import Cell as NasCell
from nasflow.nn import ChosenInputs, InputChoice, LayerChoice, ModelSpace, ParametrizedModule, Repeat
from nasflow.nn.base import MutableModule, module_leaf_mutables
from nasflow.nn.init_recording import hook_count, written_after_build

from .built import BuiltGraphs
from .errors import GraphConversionError, GraphFormatError
from .ir import Graph, Node, NodeRef
from .mutator import join_path
from .operations import AttributeOp, Cell, FunctionOp, InputsOp, MethodOp, ModuleOp, Operation, check_node_call
from .refs import check_ref, ref_of
from .space import GraphModelSpace
from .trace import fix_for, plain_attributes, same_computation, signature_of, trace_module, traced_container, value_key
from .values import Ref, Slot, constructor_call, default_of, map_template, to_ir_value

__all__ = ["convert_model_space", "module_kind"]

_KINDS = {"positional_only": "positional", "positional_or_keyword": "positional", "var_positional": "var_positional",
          "keyword_only": "keyword_only", "var_keyword": "var_keyword"}
_VAR = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def module_kind(module: nn.Module) -> str:
    """basic, layer_choice, input_choice, repeat, cell, container or user."""
    if isinstance(module, LayerChoice):
        return "layer_choice"
    if isinstance(module, InputChoice):
        return "input_choice"
    if isinstance(module, Repeat):
        return "repeat"
    if isinstance(module, NasCell):
        return "cell"
    if isinstance(module, (ChosenInputs, ParametrizedModule)) or getattr(type(module), "_nni_basic_unit", False):
        return "basic"
    if traced_container(module):
        return "container"
    if type(module).__module__.startswith("torch.nn."):
        return "basic"
    return "user"


def _describe(module: nn.Module, path: str) -> str:
    return f"module '{path}' ({type(module).__qualname__})" if path else f"the space ({type(module).__qualname__})"


def _subject(module: nn.Module, path: str) -> str:
    """``_describe`` starting a sentence."""
    text = _describe(module, path)
    return text[0].upper() + text[1:]


class _StructureKeys:
    """Equal keys mean fx traces the two modules alike: same classes, same plain attribute values and
    tensor shapes, all the way down. Tracing dominates conversion time, and spaces repeat the same
    few blocks hundreds of times (every LayerChoice candidate of every cell), so one trace is reused."""

    def __init__(self) -> None:
        self.ids: dict[Any, int] = {}
        self.memo: dict[int, int] = {}

    def __call__(self, module: nn.Module) -> int:
        if id(module) in self.memo:
            return self.memo[id(module)]
        attrs = tuple((k, value_key(v)) for k, v in plain_attributes(module))
        tensors = tuple((k, tuple(v.shape), v.dtype, v.requires_grad) if v is not None else (k, None)
                        for d in (module._parameters, module._buffers) for k, v in d.items())
        children = tuple((k, type(c), self(c)) if c is not None else (k, None) for k, c in module._modules.items())
        key = (type(module), attrs, tensors, children, frozenset(module._non_persistent_buffers_set))
        self.memo[id(module)] = self.ids.setdefault(key, len(self.ids))
        return self.memo[id(module)]


class _Converter(BuiltGraphs):
    def __init__(self, space: nn.Module, model: GraphModelSpace) -> None:
        self.space, self.model = space, model
        self.graph_of: dict[int, str] = {}
        self.fixed_of: dict[int, dict[str, Any]] = {}
        self.candidates_of: dict[int, list[tuple[Any, Operation, str]]] = {}
        self.structure_key = _StructureKeys()
        self.traces: dict[Any, tuple[fx.Graph, dict[str, torch.Tensor]]] = {}
        self.signatures: dict[type, list[inspect.Parameter]] = {}
        self.tensor_paths: dict[int, tuple[str, tuple[str, str]]] = {}
        self.choice_paths: set[str] = set()
        self.initialized: list[str] = []  # basic units whose parameters the space wrote after building them

    # ---- graphs -----------------------------------------------------------------------------
    def new_graph(self, module: nn.Module, path: str) -> Graph:
        name = "_model__" + "".join(c if c.isalnum() else "_" for c in path.replace(".", "__")) if path else "_model"
        while name in self.model.graphs:
            name += "_"
        graph = Graph(name, path, _type_path(type(module)))
        self.model.graphs[name] = graph
        self.graph_of[id(module)] = name
        return graph

    def signature(self, module: nn.Module) -> list[inspect.Parameter]:
        if type(module) not in self.signatures:
            self.signatures[type(module)] = signature_of(module)
        return self.signatures[type(module)]

    def fixed_by_call(self, module: nn.Module, path: str, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> dict[str, Any]:
        """The forward() parameters a call with this template fixes: those it leaves out (at their
        defaults) and those it passes None, a bool or a string (what code branches on: ``if y is None``,
        ``if flag``, ``if mode == 'a'``). The module's graph is traced with them fixed; the call still
        passes them, and the graph's forward ignores them."""
        params = self.signature(module)
        try:
            bound = inspect.Signature(params).bind(*args, **kwargs)
        except TypeError as err:
            raise GraphConversionError(f"{_subject(module, path)} is called with arguments its forward() does "
                                       f"not take: {err}.") from err
        fixed = {}
        for p in params:
            if p.kind in _VAR:
                continue
            if p.name not in bound.arguments:
                if p.default is not inspect.Parameter.empty:
                    fixed[p.name] = p.default
            elif bound.arguments[p.name] is None or isinstance(bound.arguments[p.name], (bool, str)):
                fixed[p.name] = bound.arguments[p.name]
        return fixed

    def traced(self, module: nn.Module, path: str, fixed: dict[str, Any]) -> tuple[fx.Graph, dict[str, torch.Tensor]]:
        """The fx trace of ``module`` with ``fixed`` parameters (one per structure and call pattern)."""
        key = (self.structure_key(module), _pattern(fixed))
        if key not in self.traces:
            before = set(module.__dict__)
            try:
                fx_graph = trace_module(module, path, _describe(module, path), fixed)
            finally:  # fx stores tensor constants on the module; keep them with the trace instead
                constants = {k: module.__dict__.pop(k) for k in set(module.__dict__) - before
                             if k.startswith("_tensor_constant")}
            self.traces[key] = (fx_graph, constants)
        return self.traces[key]

    def module_graph(self, module: nn.Module, path: str, fixed: dict[str, Any] | None = None) -> str:
        """The graph of a user module or container (traced once per call pattern, however often called)."""
        fixed = fixed or {}
        if id(module) in self.graph_of:
            known = self.fixed_of.get(id(module), {})
            if _pattern(known) != _pattern(fixed):
                raise GraphConversionError(
                    f"{_subject(module, path)} is called in two ways, fixing the arguments {known} at one call and "
                    f"{fixed} at another (left out, or given as None, a bool or a string, which code may branch on); "
                    "one module is one graph, traced for one way of calling it. Pass the same arguments at every "
                    f"call, or {fix_for(path)}.")
            return self.graph_of[id(module)]
        if isinstance(module, MutableModule):
            self.collect_own_mutables(module, path)
        graph = self.new_graph(module, path)
        self.fixed_of[id(module)] = fixed
        if traced_container(module):
            graph.input_node.operation = InputsOp(signature=[{"name": "input", "kind": "positional"}])
            prev: NodeRef = (graph.input_node, 0)
            for name, child in module._modules.items():
                if child is not None:
                    node = self.add_call(graph, child, name, (Slot(0),), {}, [prev], _name(name))
                    prev = (node, None)
            graph.add_edge(prev, (graph.output_node, 0))
            graph.output_node.args = (Slot(0),)
            return graph.name
        fx_graph, constants = self.traced(module, path, fixed)
        self.from_fx(graph, module, fx_graph, constants, set(fixed) if not path else set())
        return graph.name

    def root_fixed(self, space: nn.Module, dummy_input: Any) -> dict[str, Any]:
        """Which optional parameters of the space's forward() to fix: none when passing them or not
        computes alike; else those the dummy input leaves out; else the conversion is refused."""
        params = self.signature(space)
        optional = {p.name: p.default for p in params
                    if p.default is not inspect.Parameter.empty and p.kind not in _VAR}
        if not optional:
            return {}
        specialized, _ = self.traced(space, "", optional)
        try:
            general: fx.Graph | None = self.traced(space, "", {})[0]
        except GraphConversionError:
            general = None
        if general is not None and same_computation(general, specialized, optional):
            return {}
        if dummy_input is not None:
            given = len(dummy_input) if isinstance(dummy_input, tuple) else 1
            positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            return {name: default for name, default in optional.items() if name not in positional[:given]}
        raise GraphConversionError(
            f"The space's forward() computes differently when its optional arguments {sorted(optional)} are passed "
            "than when they are left out (it branches on them, e.g. `if y is not None:`), and which call your "
            "evaluator makes is unknown at conversion. Pass dummy_input=... to GraphModelSpace.from_model holding "
            "exactly the positional arguments your evaluator passes (the model is traced for that call), or give "
            "those parameters no default."
        )

    def collect_own_mutables(self, module: MutableModule, path: str) -> None:
        """Constraints a space adds are kept; choices made in plain Python cannot be graph mutations."""
        plain = [m for m in module.mutables if not isinstance(m, Constraint)]
        if plain:
            labels = sorted({leaf.label for m in plain for leaf in m.leaf_mutables()})
            raise GraphConversionError(
                f"{_subject(module, path)} resolves the choices {labels} in plain Python (ensure_frozen), which "
                "the graph format cannot represent as graph mutations. Pass those mutables to a Mutable* layer, a "
                "LayerChoice or a ParametrizedModule instead, or use the simplified format."
            )
        for m in module.mutables:
            if isinstance(m, Constraint):
                self.model.extra_mutables.append(to_ir_value(m, f"the constraints of {_describe(module, path)}"))

    def from_fx(self, graph: Graph, module: nn.Module, fx_graph: fx.Graph, constants: dict[str, torch.Tensor],
                dropped: set[str]) -> None:
        """``graph`` from ``module``'s fx trace; its forward has the module's signature, less ``dropped``
        (the space's fixed parameters: a call passing them fails instead of being ignored)."""
        where = _describe(module, graph.space_path)
        signature: list[dict[str, Any]] = []
        for param in self.signature(module):
            if param.name in dropped:
                continue
            entry: dict[str, Any] = {"name": param.name, "kind": _KINDS[param.kind.name.lower()]}
            if param.default is not inspect.Parameter.empty:
                entry["default"] = to_ir_value(param.default, f"default of {param.name!r} in {where}")
            signature.append(entry)
        graph.input_node.operation = InputsOp(signature=signature)
        index_of = {p["name"]: i for i, p in enumerate(signature)}
        called = {n.target for n in fx_graph.nodes if n.op == "call_module"}
        env: dict[fx.Node, NodeRef] = {}
        for n in fx_graph.nodes:
            if n.op == "placeholder":
                env[n] = (graph.input_node, index_of[n.target.lstrip("*")])
                continue
            refs: list[NodeRef] = []
            args, kwargs = self.template(n.args, env, refs, where), self.template(n.kwargs, env, refs, where)
            if n.op == "output":
                graph.output_node.args = (args[0],)
                for i, ref in enumerate(refs):
                    graph.add_edge(ref, (graph.output_node, i))
                continue
            if n.op == "call_module":
                node = self.add_call(graph, module.get_submodule(n.target), n.target, args, kwargs, refs, n.name)
            else:
                op, python_name = self.plain_op(n, module, graph, where, constants, called)
                try:
                    op.check(where)
                    check_node_call(op, args, kwargs, where)
                except GraphFormatError as err:
                    raise GraphConversionError(f"Cannot convert {where} to a graph: {err} To fix it, "
                                               f"{fix_for(graph.space_path)}.") from err
                node = graph.add_node(n.name, op, args, kwargs, python_name)
                for i, ref in enumerate(refs):
                    graph.add_edge(ref, (node, i))
            env[n] = (node, None)

    def template(self, value: Any, env: dict[fx.Node, NodeRef], refs: list[NodeRef], where: str) -> Any:
        """fx arguments with fx nodes replaced by ``Slot``s (one per distinct producer, in ``refs``)."""

        def leaf(v: Any) -> Any:
            if isinstance(v, fx.Node):
                ref = env[v]
                for i, known in enumerate(refs):
                    if known[0] is ref[0] and known[1] == ref[1]:
                        return Slot(i)
                refs.append(ref)
                return Slot(len(refs) - 1)
            return to_ir_value(v, where)

        return map_template(_plain(value), leaf)

    def plain_op(self, n: fx.Node, module: nn.Module, graph: Graph, where: str, constants: dict[str, torch.Tensor],
                 called: set[str]) -> tuple[Operation, str | None]:
        if n.op == "call_method":
            return MethodOp(name=n.target), None
        if n.op == "call_function":
            ref = ref_of(n.target)
            if ref is None:
                raise GraphConversionError(
                    f"{where} calls {n.target!r}, which generated code cannot import. Define the function at "
                    "module level (not a lambda or a local function)."
                )
            return FunctionOp(target=check_ref(ref, None, where)), None
        if n.op == "get_attr":
            return self.attribute_op(n.target, module, graph, where, constants, called), n.target
        raise GraphConversionError(f"{where}: unexpected fx node {n.op!r}.")

    def attribute_op(self, target: str, module: nn.Module, graph: Graph, where: str,
                     constants: dict[str, torch.Tensor], called: set[str]) -> AttributeOp:
        if target in constants:
            return AttributeOp.of("constant", constants[target])
        value: Any = module
        for part in target.split("."):
            value = getattr(value, part)
        if not isinstance(value, torch.Tensor):
            raise GraphConversionError(f"{where} uses attribute {target!r} ({type(value).__qualname__}) as a value; "
                                       "only tensors can be graph attributes.")
        owner_path, _, leaf = target.rpartition(".")
        owner = module.get_submodule(owner_path) if owner_path else module
        path = join_path(graph.space_path, target)
        # a tensor of a basic unit this graph calls is that unit's (generated code reads it from there)
        owned = owner_path in called and module_kind(owner) == "basic"
        builder = ("module", join_path(graph.space_path, owner_path)) if owned else ("attribute", path)
        self.claim(value, path, builder)
        if isinstance(value, nn.Parameter):
            return AttributeOp.of("parameter", value)
        if leaf in owner._buffers:
            return AttributeOp.of("buffer", value, persistent=leaf not in owner._non_persistent_buffers_set)
        return AttributeOp.of("constant", value)

    def claim(self, tensor: torch.Tensor, path: str, builder: tuple[str, str]) -> None:
        """Each tensor of the space is built by one node (``builder``: the module or attribute path that
        generated code builds it at); two builders sharing one tensor would come apart."""
        known, known_builder = self.tensor_paths.setdefault(id(tensor), (path, builder))
        if known_builder == builder or _exclusive(known, path, self.choice_paths):
            return
        raise GraphConversionError(
            f"'{known}' and '{path}' are one tensor in the space (tied weights, or one module used at two "
            "places), but the graph format builds each of them separately, so training would untie them. Make "
            "the module holding both uses a basic unit (subclass nasflow.nn.ParametrizedModule or set "
            "`_nni_basic_unit = True`), or use the simplified model format."
        )

    # ---- calls of modules -------------------------------------------------------------------
    def add_call(self, graph: Graph, module: nn.Module, rel: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 refs: list[NodeRef], name: str) -> Node:
        """A node calling ``module`` (at ``rel`` under the graph's module) with the given template."""
        kind, path = module_kind(module), join_path(graph.space_path, rel)
        mutation: dict[str, Any] | None = None
        if kind == "basic":
            op, python_name = self.basic_op(module, path), rel
        elif kind == "layer_choice":
            candidates = self.layer_choice_candidates(module, path, rel, args, kwargs)
            default = default_of(module.choice)
            _, op, python_name = next(c for c in candidates if c[0] == default)
            mutation = {"type": "layer_choice", "mutable": module.choice, "path": path, "candidates": candidates}
        elif kind == "input_choice":
            op, python_name = self.chosen_inputs_op(default_of(module.choice), module.reduction), rel
            mutation = {"type": "input_choice", "mutable": module.choice, "reduction": module.reduction}
        elif kind == "cell":
            args, refs = self.cell_inputs(graph, module, path, args, kwargs, refs, name)
            kwargs, op, python_name = {}, Cell(graph=self.cell_graph(module, path)), rel
        elif kind == "repeat":
            op, python_name = Cell(graph=self.repeat_graph(module, path)), rel
        else:
            fixed = self.fixed_by_call(module, path, args, kwargs)
            op, python_name = Cell(graph=self.module_graph(module, path, fixed)), rel
        node = graph.add_node(name, op, args, kwargs, python_name)
        node.mutation = mutation
        for i, ref in enumerate(refs):
            graph.add_edge(ref, (node, i))
        return node

    @staticmethod
    def chosen_inputs_op(chosen: Any, reduction: str) -> ModuleOp:
        return ModuleOp(cls=Ref("nasflow.nn.choice:ChosenInputs"), args=(chosen, reduction), kwargs={})

    def basic_op(self, module: nn.Module, path: str) -> ModuleOp:
        where = _describe(module, path)
        if isinstance(module, ChosenInputs):
            return self.chosen_inputs_op(module.chosen, module.reduction)
        inner = [m.label for child in module.children() for m in module_leaf_mutables(child)]
        if inner:
            raise GraphConversionError(
                f"{where} is a basic unit (one graph node), but modules inside it hold the choices "
                f"{sorted(set(inner))}. Move those choices out of the basic unit, or make them init arguments of "
                "the ParametrizedModule."
            )
        cls, args, kwargs = constructor_call(module, where, GraphConversionError)
        if written_after_build(module):
            self.initialized.append(path)
        ref = ref_of(cls)
        if ref is None:
            raise GraphConversionError(
                f"{where}: its class has no import path (a local class), so generated code cannot build it; define "
                "it at module level, in an importable module.")
        check_ref(ref, None, where)
        for name, tensor in module.state_dict(keep_vars=True).items():
            self.claim(tensor, join_path(path, name), ("module", path))
        what = f"init arguments of {where}"
        return ModuleOp(cls=ref, args=to_ir_value(tuple(args), what), kwargs=to_ir_value(dict(kwargs), what))

    def layer_choice_candidates(self, module: LayerChoice, path: str, rel: str, args: tuple[Any, ...],
                                kwargs: dict[str, Any]) -> list[tuple[Any, Operation, str]]:
        if id(module) not in self.candidates_of:
            self.choice_paths.add(path)
            candidates = []
            for key in module.names:
                candidate = module[key]
                op = self.candidate_op(candidate, join_path(path, str(key)), args, kwargs)
                candidates.append((key, op, join_path(rel, str(key))))
            self.candidates_of[id(module)] = candidates
        return self.candidates_of[id(module)]

    def candidate_op(self, module: nn.Module, path: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Operation:
        kind = module_kind(module)
        if kind == "basic":
            return self.basic_op(module, path)
        if kind == "repeat":
            return Cell(graph=self.repeat_graph(module, path))
        if kind == "cell":
            return Cell(graph=self.cell_graph(module, path))
        if kind in ("layer_choice", "input_choice"):
            return Cell(graph=self.wrapper_graph(module, path, len(args), list(kwargs)))
        return Cell(graph=self.module_graph(module, path, self.fixed_by_call(module, path, args, kwargs)))

    def wrapper_graph(self, module: nn.Module, path: str, n_args: int, kwarg_names: list[str]) -> str:
        """A one-node graph around a nested choice, so it can be a candidate of another one."""
        if id(module) in self.graph_of:
            return self.graph_of[id(module)]
        graph = self.new_graph(module, path)
        signature = [{"name": f"input_{i}", "kind": "positional"} for i in range(n_args)]
        signature += [{"name": k, "kind": "keyword_only"} for k in kwarg_names]
        graph.input_node.operation = InputsOp(signature=signature)
        refs: list[NodeRef] = [(graph.input_node, i) for i in range(len(signature))]
        node = self.add_call(graph, module, "", tuple(Slot(i) for i in range(n_args)),
                             {k: Slot(n_args + j) for j, k in enumerate(kwarg_names)}, refs, "choice")
        graph.add_edge((node, None), (graph.output_node, 0))
        graph.output_node.args = (Slot(0),)
        return graph.name


def _pattern(fixed: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((name, value_key(value)) for name, value in fixed.items()))


def _exclusive(a: str, b: str, choice_paths: set[str]) -> bool:
    """Whether paths ``a`` and ``b`` lie in different candidates of one LayerChoice (never both built)."""
    for choice in choice_paths:
        prefix = choice + "."
        if a.startswith(prefix) and b.startswith(prefix):
            if a[len(prefix):].split(".")[0] != b[len(prefix):].split(".")[0]:
                return True
    return False


def _type_path(cls: type) -> str | None:
    """The class's path, only used to name generated classes (a local class gets its plain name)."""
    ref = ref_of(cls)
    if ref is not None:
        return ref.path
    name = cls.__qualname__.rpartition(".")[2]
    return f"{cls.__module__}:{name}" if name.isidentifier() and all(p.isidentifier() for p in
                                                                     cls.__module__.split(".")) else None


def _name(attr: str) -> str:
    return attr if attr.isidentifier() else "_" + "".join(c if c.isalnum() else "_" for c in attr)


def _plain(value: Any) -> Any:
    """fx's immutable containers as plain lists / dicts."""
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(_plain(value.start), _plain(value.stop), _plain(value.step))
    return value


def _check_labels(space: nn.Module, model: GraphModelSpace) -> None:
    expected = (space.simplify() if isinstance(space, MutableModule)
                else {m.label: m for m in module_leaf_mutables(space)})
    got = {m.label for m in model._space_leaf_mutables(None)}  # the model's choices; the evaluator may add its own
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        raise GraphConversionError(
            f"The graph IR does not represent the space's choices exactly (missing {missing}, extra {extra}). A "
            "mutable module nasflow cannot convert is probably inside a basic unit or an unsupported module."
        )


def _check_own_freezing(space: nn.Module) -> None:
    """A module that freezes its own way (NNI's NDS spaces rebuild per sample, NAS-Bench-101's cell
    exists only frozen) builds models that the graph, converted once from the space, cannot follow.
    The converter knows how nasflow's own mutable modules freeze, and no other way."""
    known = (Mutable, MutableModule, ModelSpace, LayerChoice, InputChoice, Repeat, NasCell, ParametrizedModule)
    for path, module in space.named_modules():
        for method in ("freeze", "freeze_shallow"):
            owner = next((c for c in type(module).__mro__ if method in c.__dict__), None)
            if owner is not None and owner not in known:
                raise GraphConversionError(
                    f"{_subject(module, path)} overrides {method}() ({owner.__qualname__}): its models are built "
                    "per sample by its own code, which the graph format, converting the space once, cannot follow. "
                    "Use the simplified (or raw) model format for this space."
                )


def _check_lazy(space: nn.Module, ran: bool) -> None:
    """Lazy modules know their shapes only after a forward pass, which a dummy input provides."""
    for path, module in space.named_modules():
        if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
            how = ("dummy_input did not reach it (a LayerChoice candidate or Repeat block it does not run): give it "
                   "its input size" if ran else
                   "pass dummy_input=... to GraphModelSpace.from_model, which runs the space once so nasflow records "
                   "the materialized modules, or give it its input size")
            raise GraphConversionError(
                f"{_subject(module, path)} is a lazy module: its parameter shapes are only known after a forward "
                f"pass. To fix it, {how} (for example {type(module).cls_to_become.__name__} instead of "  # type: ignore
                f"{type(module).__name__})."
            )


def _check_hooks(module: nn.Module, path: str = "") -> None:
    """The graph copies the forward code of the space and its containers, and replaces choices by what
    they choose: hooks on any of them would be lost. A basic unit is rebuilt by its constructor, which
    registers its own hooks again (``changed_after_build`` refuses those registered after it)."""
    if module_kind(module) == "basic":
        return
    if hook_count(module):
        raise GraphConversionError(
            f"{_subject(module, path)} has a forward or backward hook, which the graph format (a copy of the "
            "forward code) would lose. Register it in the constructor of a basic unit (a "
            "nasflow.nn.ParametrizedModule) on a module that unit builds, or use model_format='simplified'.")
    for name, child in module.named_children():
        _check_hooks(child, join_path(path, name))


def _warn_initialization(space: nn.Module, paths: list[str]) -> None:
    shown = ", ".join(repr(p) for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    warnings.warn(
        f"{type(space).__name__}: its constructor wrote the parameters of {len(paths)} modules after building them "
        f"({shown}), a custom initialization. The graph format builds each model's modules from their init "
        "arguments, so its trials start from those modules' default initialization. Use "
        "model_format='simplified' to keep yours, or initialize inside the modules' own constructors.",
        stacklevel=3)


def convert_model_space(space: nn.Module, evaluator: Any = None, dummy_input: Any = None,
                        cls: type[GraphModelSpace] = GraphModelSpace) -> GraphModelSpace:
    """The graph IR of ``space`` (see the module docstring). With ``dummy_input``, the space is run on
    it first (which materializes lazy modules) and the conversion is verified numerically after."""
    from .verify import check_candidate_shapes, verify_conversion

    if not isinstance(space, nn.Module):
        raise TypeError(f"GraphModelSpace.from_model needs a torch module, got {type(space).__name__}.")
    if isinstance(space, ModelSpace) and space.frozen_sample is not None:
        raise ValueError(f"{type(space).__name__} is already a frozen model, not a space.")
    kind = module_kind(space)
    if kind not in ("user", "container"):
        raise GraphConversionError(
            f"The space itself is a {kind} module ({type(space).__qualname__}); wrap it in a nasflow.nn.ModelSpace."
        )
    _check_own_freezing(space)
    _check_hooks(space)
    if dummy_input is not None:
        check_candidate_shapes(space, dummy_input)
    _check_lazy(space, dummy_input is not None)
    model = cls(evaluator=evaluator)
    model.space_type = _type_path(type(space))
    converter = _Converter(space, model)
    try:
        converter.module_graph(space, "", converter.root_fixed(space, dummy_input))
    except GraphFormatError as err:  # a value the IR cannot hold: a conversion error like any other
        if isinstance(err, GraphConversionError):
            raise
        raise GraphConversionError(str(err)) from err
    model.root_name = "_model"
    _check_labels(space, model)
    if converter.initialized:
        _warn_initialization(space, converter.initialized)
    if dummy_input is not None:
        verify_conversion(space, model, dummy_input)
    return model
