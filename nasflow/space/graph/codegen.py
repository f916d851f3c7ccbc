"""Code generation: a frozen graph model becomes readable PyTorch source.

One ``nn.Module`` class per reachable graph (identical graphs share a class): ``__init__`` builds
the graph's modules with their recorded arguments, ``forward`` runs its nodes in topological
order. User classes and functions are imported by path.

Generating code imports nothing and runs nothing: it only writes text, from IR whose names were
checked (see ``refs`` and ``Operation.check``), and checks again what it pastes into the source.
Only ``instantiate`` (a model built to train) executes the code, importing the user's basic units.

Objects defined in ``__main__`` cannot be imported by another process. ``code()`` refuses them
with an error that names them, unless asked to embed them with cloudpickle (valid, not readable);
``executable_model()`` passes them to the generated code directly, taking them from this process's
``__main__`` or, after the model was pickled, from the copies that travelled with it.
"""

from __future__ import annotations

import base64
import builtins
import collections
import itertools
import keyword
import linecache
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import cloudpickle
import torch
from torch import nn

from nasflow.mutable import Mutable

from .errors import GraphFormatError
from .operations import AttributeOp, Cell, FunctionOp, MethodOp, ModuleOp, check_node_call
from .refs import Ref, public_identifier
from .values import ModuleSpec, Slot, TrainingFlag, iter_values

if TYPE_CHECKING:
    from .ir import Graph, Node
    from .space import GraphModelSpace

__all__ = ["GeneratedCode", "generate_code", "instantiate", "attribute_names", "main_objects"]

MainMode = Literal["error", "embed", "namespace"]
_RESERVED = {"self", "torch", "nn", "F", "operator", "math", "builtins", "cloudpickle", "base64",
             "list", "getattr", "slice", "float", "super", "_nf_tensor"}
_INFIX = {"add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "mod": "%", "pow": "**",
          "matmul": "@", "and_": "&", "or_": "|", "xor": "^", "lshift": "<<", "rshift": ">>", "lt": "<",
          "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_UNARY = {"neg": "-", "pos": "+", "invert": "~"}
_INPLACE = {"iadd": "+=", "isub": "-=", "imul": "*=", "itruediv": "/=", "ifloordiv": "//=", "imod": "%=",
            "ipow": "**=", "imatmul": "@=", "iand": "&=", "ior": "|=", "ixor": "^=", "ilshift": "<<=",
            "irshift": ">>="}
_NAMESPACE_ALIASES = {"torch": "torch", "torch.nn": "nn", "torch.nn.functional": "F", "operator": "operator",
                      "math": "math"}


@dataclass
class GeneratedCode:
    """The module source, plus its parts: import lines and ``(name, source, child class names)`` per class."""

    source: str
    root_class: str
    namespace: dict[str, Any] = field(default_factory=dict)
    imports: str = ""
    classes: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)


def _identifier(name: str) -> str:
    name = re.sub(r"[^0-9A-Za-z_]", "_", name.replace(".", "__"))
    if not name or name[0].isdigit():
        name = "_" + name
    return name + "_" if keyword.iskeyword(name) else name


def attribute_names(graph: Graph) -> dict[str, str]:
    """Node name -> attribute holding its module / sub-graph / tensor (shared by equal python names).
    A tensor of a basic unit the graph calls is no attribute of its own: see ``owned_tensor``."""
    by_python: dict[str, str] = {}
    taken: set[str] = set()
    out: dict[str, str] = {}
    for node in graph.hidden_nodes.values():
        if not isinstance(node.operation, (ModuleOp, Cell, AttributeOp)) or owned_tensor(graph, node) is not None:
            continue
        key = node.python_name or f"<node {node.name}>"
        if key not in by_python:
            base = _identifier(node.python_name or node.name)
            if hasattr(nn.Module, base) or base in _RESERVED:
                base += "_"
            attr, k = base, 1
            while attr in taken:
                attr, k = f"{base}_{k}", k + 1
            taken.add(attr)
            by_python[key] = attr
        out[node.name] = by_python[key]
    return out


def owned_tensor(graph: Graph, node: Node) -> tuple[Node, list[str]] | None:
    """For a tensor attribute of a basic unit that the graph also calls (``self.fc.weight`` next to
    ``self.fc(x)``): that module's node and the attribute path in it, so both uses share one tensor."""
    if not isinstance(node.operation, AttributeOp) or not node.python_name or "." not in node.python_name:
        return None
    for owner in graph.hidden_nodes.values():
        if isinstance(owner.operation, ModuleOp) and owner.python_name \
                and node.python_name.startswith(owner.python_name + "."):
            rest = node.python_name[len(owner.python_name) + 1:].split(".")
            if all(public_identifier(part) or part.isdigit() for part in rest):
                return owner, rest
    return None


class _Imports:
    def __init__(self, model: GraphModelSpace, main: MainMode) -> None:
        self.model, self.main = model, main
        self.statements: dict[str, None] = {"import torch": None, "from torch import nn": None}
        self.exprs: dict[str, str] = {}
        self.taken: set[str] = set(_RESERVED)
        self.main_objects: dict[str, Any] = {}

    def name(self, preferred: str) -> str:
        name, k = preferred, 1
        while name in self.taken:
            name, k = f"{preferred}_{k}", k + 1
        self.taken.add(name)
        return name

    def expr(self, ref: Ref) -> str:
        """The expression naming ``ref`` in the generated module (importing it)."""
        if ref.path not in self.exprs:
            self.exprs[ref.path] = self._new_expr(ref)
        return self.exprs[ref.path]

    def _new_expr(self, ref: Ref) -> str:
        module, qualname = ref.module, ref.qualname
        top, _, rest = qualname.partition(".")
        suffix = "." + rest if rest else ""
        if module == "builtins" and hasattr(builtins, top):
            return qualname
        if module in _NAMESPACE_ALIASES:
            alias = _NAMESPACE_ALIASES[module]
            statement = {"torch": "import torch", "torch.nn": "from torch import nn",
                         "torch.nn.functional": "import torch.nn.functional as F"}.get(module, f"import {module}")
            self.statements[statement] = None
            return f"{alias}.{qualname}"
        if module == "__main__":
            if self.main == "error":
                raise GraphFormatError(
                    f"The model uses {top!r}, defined in __main__, which generated code cannot import from another "
                    "process. Move it into an importable module, or call code(embed_main=True) to embed it "
                    "with cloudpickle."
                )
            local = self.name(top)
            self.main_objects[local] = _main_object(self.model, top)
            return local + suffix
        local = self.name(top)
        self.statements[f"from {module} import {top}" + (f" as {local}" if local != top else "")] = None
        return local + suffix

    def header(self) -> list[str]:
        lines = sorted(self.statements, key=lambda s: (not s.startswith("import"), s))
        if self.main == "embed" and self.main_objects:
            lines += ["import base64", "", "import cloudpickle", ""]
            for local, obj in self.main_objects.items():
                data = base64.b64encode(cloudpickle.dumps(obj)).decode("ascii")
                lines.append(f"{local} = cloudpickle.loads(base64.b64decode({data!r}))  # defined in __main__")
        return lines


def _main_object(model: GraphModelSpace, name: str) -> Any:
    if name in model._main_objects:
        return model._main_objects[name]
    main = sys.modules.get("__main__")
    if main is not None and hasattr(main, name):
        return getattr(main, name)
    raise ImportError(f"{name!r} was defined in the __main__ module of the process that built the space, and is "
                      "not available here. Define it in an importable module.")


def _iter_refs(model: GraphModelSpace) -> Iterator[Ref]:
    for graph in model.graphs.values():
        for node in graph.hidden_nodes.values():
            ops = [node.operation] + [c[1] for c in (node.mutation or {}).get("candidates", [])]
            for value in itertools.chain(*(iter_values(op.parameters) for op in ops), iter_values(node.args),
                                         iter_values(node.kwargs)):
                if isinstance(value, Ref):
                    yield value


def main_objects(model: GraphModelSpace) -> dict[str, Any]:
    """Objects from ``__main__`` the model refers to (they travel by value when it is pickled)."""
    names = {ref.qualname.partition(".")[0] for ref in _iter_refs(model) if ref.module == "__main__"}
    return {name: _main_object(model, name) for name in sorted(names)}


class _Renderer:
    """Python source for the values of one node: slots become variable names, references become
    ``\1path\1`` placeholders (resolved to imported names once the whole model is known)."""

    def __init__(self, refs: dict[str, Ref], slot_vars: dict[int, str]) -> None:
        self.refs, self.slot_vars = refs, slot_vars

    def ref(self, ref: Ref) -> str:
        self.refs[ref.path] = ref
        return f"\1{ref.path}\1"

    def __call__(self, value: Any) -> str:
        if isinstance(value, Slot):
            return self.slot_vars[value.index]
        if value is None or isinstance(value, (bool, int, str)):
            return repr(value)
        if isinstance(value, float):
            return repr(value) if value == value and abs(value) != float("inf") else f"float({str(value)!r})"
        if isinstance(value, list):
            return "[" + ", ".join(self(v) for v in value) + "]"
        if isinstance(value, torch.Size):
            return f"torch.Size({list(value)!r})"
        if isinstance(value, tuple):
            return "(" + ", ".join(self(v) for v in value) + ("," if len(value) == 1 else "") + ")"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{self(k)}: {self(v)}" for k, v in value.items()) + "}"
        if isinstance(value, slice):
            return f"slice({self(value.start)}, {self(value.stop)}, {self(value.step)})"
        if value is Ellipsis:
            return "..."
        if isinstance(value, (torch.dtype, torch.memory_format, torch.layout)):
            return str(value)
        if isinstance(value, torch.device):
            return f"torch.device({str(value)!r})"
        if isinstance(value, torch.Tensor):
            return _tensor_expr(value, self)
        if isinstance(value, Ref):
            return self.ref(value)
        if isinstance(value, ModuleSpec):
            return f"{self.ref(value.cls)}({self.call(value.args, value.kwargs)})"
        if isinstance(value, TrainingFlag):
            return "self.training"
        if isinstance(value, Mutable):
            raise GraphFormatError(f"Cannot generate code for the unfrozen choice {value!r}; freeze the model first.")
        raise GraphFormatError(f"Cannot generate code for the value {value!r} ({type(value).__qualname__}).")

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        for key in kwargs:
            if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
                raise GraphFormatError(f"Keyword argument name {key!r} is not a Python identifier.")
        return ", ".join([self(a) for a in args] + [f"{k}={self(v)}" for k, v in kwargs.items()])

    def index(self, value: Any) -> str:
        if isinstance(value, slice):
            parts = ["" if v is None else self(v) for v in (value.start, value.stop, value.step)]
            return f"{parts[0]}:{parts[1]}" + (f":{parts[2]}" if parts[2] else "")
        if isinstance(value, tuple) and not isinstance(value, torch.Size) and value:
            return ", ".join(self.index(v) for v in value) + ("," if len(value) == 1 else "")
        return self(value)


def _signature(graph: Graph, refs: dict[str, Ref]) -> tuple[str, dict[int, str]]:
    parts, slot_vars, star = ["self"], {}, False
    for index, param in enumerate(graph.input_node.operation.parameters["signature"]):
        name, kind = param["name"], param["kind"]
        slot_vars[index] = name
        if kind == "var_positional":
            parts.append(f"*{name}")
            star = True
        elif kind == "var_keyword":
            parts.append(f"**{name}")
        else:
            if kind == "keyword_only" and not star:
                parts.append("*")
                star = True
            default = f"={_Renderer(refs, {})(param['default'])}" if "default" in param else ""
            parts.append(name + default)
    return ", ".join(parts), slot_vars


def _function_lines(op: FunctionOp, node: Node, var: str, r: _Renderer) -> list[str]:
    """``var = <call>``; an in-place operator keeps Python's meaning: ``var = a; var += b`` updates a
    tensor in place (as ``y = x; y += 1`` does in the user's code) and rebinds a number."""
    path, args, kwargs = op.target.path, node.args, node.kwargs
    module, _, name = path.partition(":")
    if module == "operator" and not kwargs and name in _INPLACE and len(args) == 2:
        return [f"{var} = {r(args[0])}", f"{var} {_INPLACE[name]} {r(args[1])}"]
    if module == "operator" and not kwargs and name == "setitem" and len(args) == 3:
        return [f"{r(args[0])}[{r.index(args[1])}] = {r(args[2])}", f"{var} = None"]
    return [f"{var} = {_function_expr(op, node, r)}"]


def _function_expr(op: FunctionOp, node: Node, r: _Renderer) -> str:
    path, args, kwargs = op.target.path, node.args, node.kwargs
    module, _, name = path.partition(":")
    if module == "operator" and not kwargs:
        if name in _INFIX and len(args) == 2:
            return f"{r(args[0])} {_INFIX[name]} {r(args[1])}"
        if name in _UNARY and len(args) == 1:
            return f"{_UNARY[name]}{r(args[0])}"
        if name == "getitem" and len(args) == 2:
            return f"{r(args[0])}[{r.index(args[1])}]"
    if path == "builtins:getattr" and len(args) == 2 and not kwargs and public_identifier(args[1]):
        return f"{r(args[0])}.{args[1]}"
    return f"{r.ref(op.target)}({r.call(args, kwargs)})"


def _class_body(graph: Graph) -> tuple[str, dict[str, Ref]]:
    """The class body as a template: ``\0graph\0`` for sub-graph classes, ``\1path\1`` for imported
    names. Cached on the graph (frozen models share the graphs no mutation touched)."""
    cached = graph.__dict__.get("_codegen")
    if cached is not None:
        return cached
    refs: dict[str, Ref] = {}
    attrs = attribute_names(graph)
    taken = set(_RESERVED)
    for node in graph.hidden_nodes.values():  # no variable may shadow a name the code imports
        for value in itertools.chain(iter_values(node.operation.parameters), iter_values(node.args),
                                     iter_values(node.kwargs)):
            if isinstance(value, Ref):
                taken.add(_NAMESPACE_ALIASES.get(value.module, value.qualname.partition(".")[0]))
    signature, input_vars = _signature(graph, refs)
    taken |= set(input_vars.values())
    var_of: dict[str, str] = {}
    init: list[str] = []
    forward: list[str] = []
    built: set[str] = set()
    incoming: dict[str, dict[int, Any]] = collections.defaultdict(dict)
    for e in graph.edges:
        incoming[e.tail.name][e.tail_slot] = e

    def slot_vars(node: Node) -> dict[int, str]:
        out = {}
        for slot, e in incoming[node.name].items():
            out[slot] = input_vars[e.head_slot] if e.head is graph.input_node else var_of[e.head.name]
        return out

    for node in graph.topo_sort():
        var = _identifier(node.name)
        while var in taken:
            var += "_"
        taken.add(var)
        var_of[node.name] = var
        r = _Renderer(refs, slot_vars(node))
        op = node.operation
        attr = attrs.get(node.name)
        if attr is not None and attr not in built:
            built.add(attr)
            init.append(_init_line(op, attr, r))
        if isinstance(op, (ModuleOp, Cell)):
            forward.append(f"{var} = self.{attr}({r.call(node.args, node.kwargs)})")
        elif isinstance(op, FunctionOp):
            forward += _function_lines(op, node, var, r)
        elif isinstance(op, MethodOp):
            op.check(f"node {node.name!r} of graph {graph.name!r}")
            check_node_call(op, node.args, node.kwargs, f"node {node.name!r} of graph {graph.name!r}")
            forward.append(f"{var} = {r(node.args[0])}.{op.parameters['name']}({r.call(node.args[1:], node.kwargs)})")
        elif isinstance(op, AttributeOp):
            owned = owned_tensor(graph, node)
            if owned is not None:
                access = "".join(f"[{int(p)}]" if p.isdigit() else f".{p}" for p in owned[1])
                forward.append(f"{var} = self.{attrs[owned[0].name]}{access}")
            else:
                forward.append(f"{var} = self.{attr}")
        else:
            raise GraphFormatError(f"Node {node.name!r} of graph {graph.name!r}: cannot generate code for {op!r}.")
    out = _Renderer(refs, slot_vars(graph.output_node))
    forward.append(f"return {out(graph.output_node.args[0])}")
    lines = ["    def __init__(self) -> None:", "        super().__init__()"]
    lines += [f"        {line}" for line in init]
    lines += ["", f"    def forward({signature}):"]
    lines += [f"        {line}" for line in forward]
    result = ("\n".join(lines), refs)
    graph.__dict__["_codegen"] = result
    return result


def _init_line(op: Any, attr: str, r: _Renderer) -> str:
    if isinstance(op, ModuleOp):
        return f"self.{attr} = {r.ref(op.cls)}({r.call(op.parameters['args'], op.parameters['kwargs'])})"
    if isinstance(op, Cell):
        return f"self.{attr} = \0{op.graph_name}\0()"
    p = op.parameters
    tensor = r(p["value"])
    if p["kind"] == "parameter":
        return f"self.{attr} = nn.Parameter({tensor}, requires_grad={bool(p.get('requires_grad', True))})"
    persistent = p["kind"] == "buffer" and bool(p.get("persistent", True))
    return f"self.register_buffer({attr!r}, {tensor}, persistent={persistent})"


def _postorder(model: GraphModelSpace) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        seen.add(name)
        for node in model.graphs[name].hidden_nodes.values():
            child = node.cell
            if child is not None and child not in seen:
                if child not in model.graphs:
                    raise GraphFormatError(f"Node {node.name!r} calls graph {child!r}, which the model does not have.")
                visit(child)
        order.append(name)

    visit(model.root_name)
    return order


def _class_base(type_path: str | None, fallback: str) -> str:
    if not type_path:
        return fallback
    return _identifier(type_path.rpartition(":")[2].rpartition(".")[2]) or fallback


_TENSOR_HELPER = '''import base64


def _nf_tensor(data: str, dtype: torch.dtype, shape: list[int]) -> torch.Tensor:
    """A tensor written as base64 of its raw bytes (native byte order)."""
    return torch.frombuffer(bytearray(base64.b64decode(data)), dtype=dtype).reshape(shape).clone()
'''


def _docstring(text: str) -> str:
    """A string literal holding ``text``: triple-quoted when that is plainly safe, else ``repr``."""
    plain = text.isprintable() and '"' not in text and "\\" not in text
    return f'"""{text}"""' if plain else repr(text)


def _tensor_expr(value: torch.Tensor, r: _Renderer) -> str:
    from .serialize import IRWriter

    if value.numel() == 0:
        return f"torch.zeros({list(value.shape)!r}, dtype={value.dtype})"
    encoded = IRWriter.tensor(value)
    if "bytes" in encoded:
        return f"_nf_tensor({encoded['bytes']!r}, {value.dtype}, {list(value.shape)!r})"
    return f"torch.tensor({r(value.tolist())}, dtype={value.dtype})"


_CHILD = re.compile("\0([^\0]*)\0")
_REF = re.compile("\1([^\1]*)\1")


def generate_code(model: GraphModelSpace, main: MainMode = "error") -> GeneratedCode:
    """The source of ``model`` (frozen); see the module docstring for ``main``."""
    canonical: dict[str, str] = {}
    bodies: dict[str, tuple[str, dict[str, Ref]]] = {}
    by_text: dict[str, str] = {}
    for name in _postorder(model):
        template, refs = _class_body(model.graphs[name])
        text = _CHILD.sub(lambda m: f"\0{canonical[m.group(1)]}\0", template)
        if name != model.root_name and text in by_text:  # identical graphs share one class
            canonical[name] = by_text[text]
            continue
        canonical[name] = name
        bodies[name] = (text, refs)
        if name != model.root_name:
            by_text[text] = name
    imports = _Imports(model, main)
    for _, refs in bodies.values():
        for ref in refs.values():
            imports.expr(ref)
    class_names: dict[str, str] = {}
    for name in bodies:
        graph = model.graphs[name]
        base = (_class_base(model.space_type, "Model") if name == model.root_name
                else _class_base(graph.module_type, "Graph"))
        class_names[name] = imports.name(base)
    chunks, classes = [], []
    for name, (text, _) in bodies.items():
        graph = model.graphs[name]
        origin = graph.module_type or "a built graph"
        where = f"module `{graph.space_path}`" if graph.space_path else "the space itself"
        doc = f"    {_docstring(f'Graph {name}: traced from {origin} ({where}).')}"
        children = tuple(dict.fromkeys(class_names[child] for child in _CHILD.findall(text)))
        text = _REF.sub(lambda m: imports.exprs[m.group(1)], _CHILD.sub(lambda m: class_names[m.group(1)], text))
        chunks.append(f"class {class_names[name]}(nn.Module):\n{doc}\n\n{text}\n")
        classes.append((class_names[name], chunks[-1], children))
    header = f'"""PyTorch source of one model of a nasflow graph model space ({model.space_type or "a module"})."""\n'
    if model.sample is not None:  # a comment: repr() has no line break, so it cannot end the comment
        header += f"# Sample: {model.sample!r}\n"
    import_lines = "\n".join(imports.header())
    if any("_nf_tensor(" in text for _, text, _ in classes):
        import_lines += "\n" + _TENSOR_HELPER
    source = header + "\n" + import_lines + "\n\n\n" + "\n\n".join(chunks)
    return GeneratedCode(source, class_names[model.root_name], dict(imports.main_objects), import_lines, classes)


_classes: collections.OrderedDict[tuple[Any, ...], tuple[type, str]] = collections.OrderedDict()
_counter = itertools.count()
_KEEP_CLASSES = 512
_lock = threading.Lock()


def _build_classes(generated: GeneratedCode) -> dict[str, type]:
    """The generated classes, compiled once per distinct source and reused across models (the
    sub-graphs no mutation touched are the same in most models). Each source is registered in
    ``linecache`` while cached, so tracebacks show the generated lines."""
    base: dict[str, Any] = {"__name__": "nasflow_generated", **generated.namespace}
    exec(generated.imports, base)
    main_ids = tuple(sorted((k, id(v)) for k, v in generated.namespace.items()))
    built: dict[str, type] = {}
    for name, text, children in generated.classes:
        key = (text, generated.imports, main_ids, tuple(id(built[c]) for c in children))
        with _lock:
            entry = _classes.get(key)
            if entry is None:
                filename = f"<nasflow-graph-{next(_counter)}>"
                namespace = {**base, **{c: built[c] for c in children}}
                linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
                exec(compile(text, filename, "exec"), namespace)
                entry = _classes[key] = (namespace[name], filename)
                while len(_classes) > _KEEP_CLASSES:
                    linecache.cache.pop(_classes.popitem(last=False)[1][1], None)
            else:
                _classes.move_to_end(key)
        built[name] = entry[0]
    return built


def instantiate(model: GraphModelSpace) -> nn.Module:
    """Generate, execute and instantiate the root class of ``model``."""
    from .ir import no_gc_pauses

    with no_gc_pauses():
        generated = generate_code(model, main="namespace")
        root_class = _build_classes(generated)[generated.root_class]
        root_class.__reduce_ex__ = _reduce_generated
        root_class.__deepcopy__ = _deepcopy_generated
        module = root_class()
    module.__dict__["_nf_model_state"] = _ModelState(model)
    module.__dict__["_nf_generated_source"] = generated.source
    return module


class _ModelState:
    """The IR a generated module came from, serialized only if the module is pickled."""

    __slots__ = ("model", "state")

    def __init__(self, model: GraphModelSpace) -> None:
        self.model: GraphModelSpace | None = model
        self.state: dict[str, Any] | None = None

    def get(self) -> dict[str, Any]:
        if self.state is None:
            assert self.model is not None
            state = self.model.__getstate__()
            state["evaluator"] = state["metrics"] = None
            self.state, self.model = state, None
        return self.state

    def __deepcopy__(self, memo: dict[int, Any]) -> _ModelState:
        return self  # describes the architecture, which copies share


def _reduce_generated(self: nn.Module, protocol: int) -> Any:
    """Generated classes cannot be imported elsewhere: pickle the IR and the weights instead."""
    return _rebuild_generated, (self.__dict__["_nf_model_state"].get(), self.state_dict(), self.training)


def _rebuild_generated(model_state: dict[str, Any], state_dict: dict[str, Any], training: bool) -> nn.Module:
    from .space import GraphModelSpace

    model = GraphModelSpace.__new__(GraphModelSpace)
    model.__setstate__(model_state)
    module = instantiate(model)
    module.load_state_dict(state_dict)
    return module.train(training)


def _deepcopy_generated(self: nn.Module, memo: dict[int, Any]) -> nn.Module:
    """The usual deep copy of a module (``__reduce_ex__`` is taken by pickling)."""
    import copy

    new = type(self).__new__(type(self))
    memo[id(self)] = new
    new.__setstate__(copy.deepcopy(self.__dict__, memo))
    return new
