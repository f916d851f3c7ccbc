"""Conversion of a model space into graph IR with torch.fx.

Each module becomes one of:
- a basic unit (plain ``torch.nn`` module, ``ParametrizedModule``, ``_nni_basic_unit``): one
  ``module`` node holding its class and init arguments (which may hold mutables: value choices);
- a LayerChoice / InputChoice: a node annotated as a mutation point;
- a Repeat or Cell: a sub-graph built here (a chain of blocks; a DAG of choices);
- any other module: a sub-graph traced with torch.fx, whose submodules are treated the same way
  (containers like ``nn.Sequential`` are traced through).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from nasflow.mutable import Constraint, Mutable
from nasflow.nn import Cell as NasCell
from nasflow.nn import ChosenInputs, InputChoice, LayerChoice, ModelSpace, ParametrizedModule, Repeat
from nasflow.nn.base import MutableModule, module_leaf_mutables
from nasflow.nn.cell import _Identity, _PassThrough

from .errors import GraphConversionError
from .ir import Graph, GraphModelSpace, Node, NodeRef
from .mutator import join_path
from .operations import AttributeOp, Cell, FunctionOp, InputsOp, MethodOp, ModuleOp, Operation
from .values import Ref, Slot, TrainingFlag, constructor_call, default_of, map_template, ref_of, to_ir_value

__all__ = ["convert_model_space", "module_kind"]

_KINDS = {"positional_only": "positional", "positional_or_keyword": "positional", "var_positional": "var_positional",
          "keyword_only": "keyword_only", "var_keyword": "var_keyword"}


def _traced_container(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


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
    if _traced_container(module):
        return "container"
    if type(module).__module__.startswith("torch.nn."):
        return "basic"
    return "user"


def _describe(module: nn.Module, path: str) -> str:
    return f"module '{path}' ({type(module).__qualname__})" if path else f"the space ({type(module).__qualname__})"


class _Tracer(fx.Tracer):
    """Every module is a leaf except containers, which are traced through; ``self.training`` stays symbolic."""

    def __init__(self, autowrap_math: bool) -> None:
        super().__init__(autowrap_modules=(math,) if autowrap_math else ())

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return not _traced_container(m)

    def create_arg(self, a: Any) -> Any:
        if isinstance(a, TrainingFlag):
            return a
        return super().create_arg(a)


_MODULE_INTERNALS = frozenset(nn.Module().__dict__)


def _value_key(value: Any) -> Any:
    """A hashable stand-in for a plain attribute value (identity for anything else)."""
    if value is None or isinstance(value, (bool, int, float, str, torch.dtype, torch.device)):
        return (type(value).__name__, value)
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_value_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((repr(k), _value_key(v)) for k, v in value.items()))
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    return ("id", id(value))


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
        attrs = tuple((k, _value_key(v)) for k, v in module.__dict__.items()
                      if k not in _MODULE_INTERNALS and not k.startswith("_nf_"))
        tensors = tuple((k, tuple(v.shape), v.dtype, v.requires_grad) if v is not None else (k, None)
                        for d in (module._parameters, module._buffers) for k, v in d.items())
        children = tuple((k, type(c), self(c)) if c is not None else (k, None) for k, c in module._modules.items())
        key = (type(module), attrs, tensors, children, frozenset(module._non_persistent_buffers_set))
        self.memo[id(module)] = self.ids.setdefault(key, len(self.ids))
        return self.memo[id(module)]


class _Converter:
    def __init__(self, space: nn.Module, model: GraphModelSpace) -> None:
        self.space, self.model = space, model
        self.graph_of: dict[int, str] = {}
        self.candidates_of: dict[int, list[tuple[Any, Operation, str]]] = {}
        self.structure_key = _StructureKeys()
        self.traces: dict[int, tuple[fx.Graph, dict[str, torch.Tensor]]] = {}
        self.signatures: dict[type, list[inspect.Parameter]] = {}

    # ---- graphs -----------------------------------------------------------------------------
    def new_graph(self, module: nn.Module, path: str) -> Graph:
        name = "_model" if not path else "_model__" + path.replace(".", "__")
        while name in self.model.graphs:
            name += "_"
        graph = Graph(name, path, _type_path(type(module)))
        self.model.graphs[name] = graph
        self.graph_of[id(module)] = name
        return graph

    def module_graph(self, module: nn.Module, path: str) -> str:
        """The graph of a user module or container (traced once, however often it is called)."""
        if id(module) in self.graph_of:
            return self.graph_of[id(module)]
        if isinstance(module, MutableModule):
            self.collect_own_mutables(module, path)
        graph = self.new_graph(module, path)
        if _traced_container(module):
            graph.input_node.operation = InputsOp(signature=[{"name": "input", "kind": "positional"}])
            prev: NodeRef = (graph.input_node, 0)
            for name, child in module._modules.items():
                if child is not None:
                    node = self.add_call(graph, child, name, (Slot(0),), {}, [prev], _name(name))
                    prev = (node, None)
            graph.add_edge(prev, (graph.output_node, 0))
            graph.output_node.args = (Slot(0),)
            return graph.name
        key = self.structure_key(module)
        if key not in self.traces:
            before = set(module.__dict__)
            try:
                fx_graph = self.trace(module, path)
            finally:  # fx stores tensor constants on the module; keep them with the trace instead
                constants = {k: module.__dict__.pop(k) for k in set(module.__dict__) - before
                             if k.startswith("_tensor_constant")}
            self.traces[key] = (fx_graph, constants)
        fx_graph, constants = self.traces[key]
        self.from_fx(graph, module, fx_graph, constants)
        return graph.name

    def collect_own_mutables(self, module: MutableModule, path: str) -> None:
        """Constraints a space adds are kept; choices made in plain Python cannot be graph mutations."""
        plain = [m for m in module.mutables if not isinstance(m, Constraint)]
        if plain:
            labels = sorted({leaf.label for m in plain for leaf in m.leaf_mutables()})
            raise GraphConversionError(
                f"{_describe(module, path)} resolves the choices {labels} in plain Python (ensure_frozen), which "
                "the graph format cannot represent as graph mutations. Pass those mutables to a Mutable* layer, a "
                "LayerChoice or a ParametrizedModule instead, or use the simplified format."
            )
        self.model.extra_mutables.extend(m for m in module.mutables if isinstance(m, Constraint))

    def trace(self, module: nn.Module, path: str) -> fx.Graph:
        where = _describe(module, path)
        if not isinstance(getattr(type(module), "forward", None), type(lambda: None)):
            raise GraphConversionError(f"{where} has no Python forward() to trace. Make it a basic unit: "
                                       "subclass nasflow.nn.ParametrizedModule.")
        saved = module.__dict__.get("training", True)
        module.__dict__["training"] = TrainingFlag(where)
        try:
            try:
                return _Tracer(autowrap_math=False).trace(module)
            except GraphConversionError:
                raise
            except Exception:  # noqa: BLE001 - retry with math functions wrapped, as fx does by default
                return _Tracer(autowrap_math=True).trace(module)
        except GraphConversionError:
            raise
        except Exception as err:
            raise GraphConversionError(
                f"Cannot convert {where} to a graph: torch.fx could not trace its forward() "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). Data-dependent control "
                "flow and loops over tensors cannot be traced: make it a basic unit by subclassing "
                "nasflow.nn.ParametrizedModule (or setting `_nni_basic_unit = True`), so it is one node that runs "
                "its forward() as written."
            ) from err
        finally:
            module.__dict__["training"] = saved

    def from_fx(self, graph: Graph, module: nn.Module, fx_graph: fx.Graph, constants: dict[str, torch.Tensor]) -> None:
        where = _describe(module, graph.space_path)
        signature: list[dict[str, Any]] = []
        if type(module) not in self.signatures:
            self.signatures[type(module)] = list(inspect.signature(module.forward).parameters.values())
        for param in self.signatures[type(module)]:
            entry: dict[str, Any] = {"name": param.name, "kind": _KINDS[param.kind.name.lower()]}
            if param.default is not inspect.Parameter.empty:
                entry["default"] = to_ir_value(param.default, f"default of {param.name!r} in {where}")
            signature.append(entry)
        graph.input_node.operation = InputsOp(signature=signature)
        index_of = {p["name"]: i for i, p in enumerate(signature)}
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
                node = graph.add_node(n.name, self.plain_op(n, module, where, constants), args, kwargs,
                                      n.target if n.op == "get_attr" else None)
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

    def plain_op(self, n: fx.Node, module: nn.Module, where: str, constants: dict[str, torch.Tensor]) -> Operation:
        if n.op == "call_method":
            return MethodOp(name=n.target)
        if n.op == "call_function":
            ref = ref_of(n.target)
            if ref is None:
                raise GraphConversionError(
                    f"{where} calls {n.target!r}, which generated code cannot import. Define the function at "
                    "module level (not a lambda or a local function)."
                )
            return FunctionOp(target=ref)
        if n.op == "get_attr":
            if n.target in constants:
                return AttributeOp.of("constant", constants[n.target])
            value = module
            for part in n.target.split("."):
                value = getattr(value, part)
            if isinstance(value, nn.Parameter):
                return AttributeOp.of("parameter", value)
            if isinstance(value, torch.Tensor):
                owner_path, _, leaf = n.target.rpartition(".")
                owner = module.get_submodule(owner_path) if owner_path else module
                if leaf in owner._buffers:
                    return AttributeOp.of("buffer", value, persistent=leaf not in owner._non_persistent_buffers_set)
                return AttributeOp.of("constant", value)
            raise GraphConversionError(f"{where} uses attribute {n.target!r} ({type(value).__qualname__}) as a value; "
                                       "only tensors can be graph attributes.")
        raise GraphConversionError(f"{where}: unexpected fx node {n.op!r}.")

    # ---- calls of modules -------------------------------------------------------------------
    def add_call(self, graph: Graph, module: nn.Module, rel: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 refs: list[NodeRef], name: str) -> Node:
        """A node calling ``module`` (at ``rel`` under the graph's module) with the given template."""
        kind, path = module_kind(module), join_path(graph.space_path, rel)
        mutation: dict[str, Any] | None = None
        if kind == "basic":
            op, python_name = self.basic_op(module, path), rel
        elif kind == "layer_choice":
            candidates = self.layer_choice_candidates(module, path, rel, len(args), list(kwargs))
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
            op, python_name = Cell(graph=self.module_graph(module, path)), rel
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
        ref = ref_of(cls)
        if ref is None:
            raise GraphConversionError(
                f"{where}: its class cannot be imported by generated code; define it at module level.")
        what = f"init arguments of {where}"
        return ModuleOp(cls=ref, args=to_ir_value(tuple(args), what), kwargs=to_ir_value(dict(kwargs), what))

    def layer_choice_candidates(self, module: LayerChoice, path: str, rel: str, n_args: int,
                                kwarg_names: list[str]) -> list[tuple[Any, Operation, str]]:
        if id(module) not in self.candidates_of:
            candidates = []
            for key in module.names:
                candidate = module[key]
                op = self.candidate_op(candidate, join_path(path, str(key)), n_args, kwarg_names)
                candidates.append((key, op, join_path(rel, str(key))))
            self.candidates_of[id(module)] = candidates
        return self.candidates_of[id(module)]

    def candidate_op(self, module: nn.Module, path: str, n_args: int, kwarg_names: list[str]) -> Operation:
        kind = module_kind(module)
        if kind == "basic":
            return self.basic_op(module, path)
        if kind == "repeat":
            return Cell(graph=self.repeat_graph(module, path))
        if kind == "cell":
            return Cell(graph=self.cell_graph(module, path))
        if kind in ("layer_choice", "input_choice"):
            return Cell(graph=self.wrapper_graph(module, path, n_args, kwarg_names))
        return Cell(graph=self.module_graph(module, path))

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

    # ---- Repeat and Cell --------------------------------------------------------------------
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
            graph.mutation = {"type": "repeat", "label": module.label, "depth": mutable, "chain": chain}
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


def _type_path(cls: type) -> str:
    ref = ref_of(cls)
    return ref.path if ref else f"{cls.__module__}:{cls.__qualname__}"


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


def _check_shapes(space: nn.Module, dummy_input: Any) -> None:
    """Run ``dummy_input`` through the space and every LayerChoice candidate; shapes must agree."""
    captured: dict[int, tuple[LayerChoice, tuple[Any, ...], dict[str, Any]]] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, a, kw: captured.setdefault(id(mod), (mod, a, kw)) and None,
                                         with_kwargs=True)
             for m in space.modules() if isinstance(m, LayerChoice)]
    modes = {m: m.training for m in space.modules()}
    space.eval()
    try:
        with torch.no_grad():
            space(*(dummy_input if isinstance(dummy_input, tuple) else (dummy_input,)))
            done: set[int] = set()
            while len(done) < len(captured):
                for key, (choice, args, kwargs) in list(captured.items()):
                    if key in done:
                        continue
                    done.add(key)
                    shapes = {name: _shapes(choice[name](*args, **kwargs)) for name in choice.names}
                    if len(set(map(repr, shapes.values()))) > 1:
                        raise GraphConversionError(
                            f"LayerChoice {choice.label!r}: candidates disagree on output shape for the dummy input: "
                            + ", ".join(f"{k!r} -> {v}" for k, v in shapes.items())
                            + ". Every candidate must produce the same shape."
                        )
    except GraphConversionError:
        raise
    except Exception as err:
        raise GraphConversionError(f"dummy_input does not run through the space: {type(err).__name__}: {err}") from err
    finally:
        for hook in hooks:
            hook.remove()
        for m, mode in modes.items():
            m.training = mode


def _shapes(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)):
        return [_shapes(v) for v in value]
    if isinstance(value, dict):
        return {k: _shapes(v) for k, v in value.items()}
    return type(value).__name__


def convert_model_space(space: nn.Module, evaluator: Any = None, dummy_input: Any = None,
                        cls: type[GraphModelSpace] = GraphModelSpace) -> GraphModelSpace:
    """The graph IR of ``space`` (see the module docstring)."""
    if not isinstance(space, nn.Module):
        raise TypeError(f"GraphModelSpace.from_model needs a torch module, got {type(space).__name__}.")
    if isinstance(space, ModelSpace) and space.frozen_sample is not None:
        raise ValueError(f"{type(space).__name__} is already a frozen model, not a space.")
    model = cls(evaluator=evaluator)
    model.space_type = _type_path(type(space))
    converter = _Converter(space, model)
    kind = module_kind(space)
    if kind in ("user", "container"):
        converter.module_graph(space, "")
    else:
        raise GraphConversionError(
            f"The space itself is a {kind} module ({type(space).__qualname__}); wrap it in a nasflow.nn.ModelSpace."
        )
    model.root_name = "_model"
    _check_labels(space, model)
    if dummy_input is not None:
        _check_shapes(space, dummy_input)
    return model
