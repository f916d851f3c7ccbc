"""Graph IR from someone else: loading, showing and exporting it never runs, unpickles or imports anything.

Each hostile IR carries a payload that would create a marker file if it ran; every reader must give a
clear error (or, for a legitimate user reference, generate text without importing it) and the marker
must not appear.
"""

from __future__ import annotations

import ast
import base64
import copy
import json
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import nasflow
from nasflow.cli import main as cli_main
from nasflow.experiment import ExperimentStore
from nasflow.experiment.experiment import experiment_dir
from nasflow.nn import LayerChoice, ModelSpace, MutableLinear
from nasflow.space.graph import GraphFormatError, GraphModelSpace


class Tiny(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.fc = MutableLinear(3, nasflow.choice("tiny/width", [2, 4]))
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="tiny/act")
        self.register_buffer("offset", torch.ones(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x + self.offset.sum(0)).relu())


class Payload:
    """Unpickling this runs ``os.system('touch <marker>')``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def ir() -> dict[str, Any]:
    torch.manual_seed(0)
    return GraphModelSpace.from_model(Tiny()).freeze({"tiny/width": 4, "tiny/act": 1}).dump()


def _node(data: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(n for n in data["graphs"]["_model"]["nodes"] if n["operation"]["type"] == kind)


def _pickled(marker: Path) -> str:
    return base64.b64encode(pickle.dumps(Payload(marker))).decode()


def _function_target(data: dict[str, Any], path: str) -> None:
    _node(data, "function")["operation"]["parameters"]["target"] = {"__ref__": path}


HOSTILE = {  # name: (what the IR is made to hold, what the error names)
    "pickled function": (lambda d, m: d["graphs"]["_model"]["nodes"].append(
        {"name": "evil", "operation": {"type": "function", "parameters": {"target": {"__pickle__": _pickled(m)}}}}),
        "unknown value tag '__pickle__'"),
    "pickled mutable": (lambda d, m: d.__setitem__("extra_mutables", [{"__mutable__": {"type": "pickle",
                                                                                       "data": _pickled(m)}}]),
                        "unknown mutable type 'pickle'"),
    "os.system target": (lambda d, m: _function_target(d, "os:system"), "names 'os:system'"),
    "os.system listed as a user reference": (lambda d, m: (_function_target(d, "os:system"),
                                                           d.__setitem__("user_refs", ["os:system"])),
                                             "'os' objects must be one of nasflow's allow-listed"),
    "torch.load target": (lambda d, m: _function_target(d, "torch:load"), "names 'torch:load'"),
    "builtins eval target": (lambda d, m: _function_target(d, "builtins:eval"), "names 'builtins:eval'"),
    "expression calling os.system": (lambda d, m: d.__setitem__("extra_mutables", [{"__mutable__": {
        "type": "MutableExpression", "function": "os:system", "template": "{}", "arguments": [f"touch {m}"]}}]),
        "names 'os:system'"),
    "method name holding code": (lambda d, m: _node(d, "method")["operation"]["parameters"].__setitem__(
        "name", f"relu(); __import__('os').system('touch {m}'); x.relu"), "is not a public identifier"),
    "dunder method": (lambda d, m: _node(d, "method")["operation"]["parameters"].__setitem__("name", "__class__"),
                      "'__class__' is not a public identifier"),
    "keyword name holding code": (lambda d, m: _node(d, "module")["operation"]["parameters"].__setitem__(
        "kwargs", {f"bias=__import__('os').system('touch {m}'), x": True}), "is not a Python identifier"),
    "dtype that is not a dtype": (lambda d, m: _node(d, "attribute")["operation"]["parameters"].__setitem__(
        "dtype", {"__dtype__": "load"}), "'load' is not a torch dtype"),
    "dtype as raw code": (lambda d, m: _node(d, "attribute")["operation"]["parameters"].__setitem__(
        "dtype", f"torch.float32); __import__('os').system('touch {m}'"), "needs a kind"),
    "input name holding code": (lambda d, m: d["graphs"]["_model"]["inputs"][0].__setitem__(
        "name", f"x=__import__('os').system('touch {m}')"), "is not a Python identifier"),
    "class path holding code": (lambda d, m: d["graphs"]["_model"].__setitem__(
        "module_type", f"x:Y(nn.Module):\n    __import__('os').system('touch {m}')"), "must look like"),
    "graph name escaping the template": (lambda d, m: d["graphs"].__setitem__("a\0b", d["graphs"]["_model"]),
                                         "Graph names"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_ir_is_refused_by_load_show_and_export(name: str, ir: dict[str, Any], tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    data = copy.deepcopy(ir)
    make_hostile, expected = HOSTILE[name]
    make_hostile(data, marker)
    with pytest.raises(GraphFormatError, match=re.escape(expected)):
        GraphModelSpace.load(json.dumps(data)).code()
    assert not marker.exists()


def test_export_of_a_hostile_store_fails_cleanly(ir: dict[str, Any], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`nasflow export ID --format code` on a store whose graph payload is hostile: an error, no side effect."""
    marker = tmp_path / "marker"
    data = copy.deepcopy(ir)
    HOSTILE["os.system listed as a user reference"][0](data, marker)
    with ExperimentStore.create(experiment_dir("evil", tmp_path), "evil", "evil", {}) as store:
        store.add_model(1, {"tiny/width": 4, "tiny/act": 1}, format="graph", payload=json.dumps(data).encode(),
                        status="trained")
        store.set_final(1, 1.0)
    assert cli_main(["export", "evil", "--format", "code", "--dir", str(tmp_path)]) == 2
    assert "os:system" in capsys.readouterr().out
    assert not marker.exists()


EVIL_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("imported")
import torch.nn
class Block(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.n = n
    def forward(self, x):
        return x * self.n
"""


def test_user_classes_are_imported_only_to_train(ir: dict[str, Any], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's basic unit is named by path: load and code() write its import without running it."""
    marker = tmp_path / "marker"
    (tmp_path / "nf_user_blocks.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    data = copy.deepcopy(ir)
    _node(data, "module")["operation"]["parameters"].update(cls={"__ref__": "nf_user_blocks:Block"},
                                                            args={"__tuple__": [2]}, kwargs={})
    data["user_refs"] = ["nf_user_blocks:Block"]
    model = GraphModelSpace.load(json.dumps(data))
    source = model.code()
    assert "from nf_user_blocks import Block" in source and "Block(2)" in source
    assert not marker.exists() and "nf_user_blocks" not in sys.modules
    assert model.dump()["user_refs"] == ["nf_user_blocks:Block"]
    model.executable_model()  # training builds the model: now the module is imported
    assert marker.read_text() == "imported"
    monkeypatch.delitem(sys.modules, "nf_user_blocks")


def test_generated_code_quotes_whatever_names_the_ir_holds(ir: dict[str, Any]) -> None:
    """Module paths are free text in the IR (ModuleDict keys can hold quotes): generated code keeps
    them inside string literals, never as code."""
    data = copy.deepcopy(ir)
    data["graphs"]["_model"]["space_path"] = '"""\nimport os; os.system("x")\n"""'
    data["sample"] = {"tiny/width": '"""\nraise SystemExit\n"""\\'}
    source = GraphModelSpace.load(json.dumps(data)).code()
    tree = ast.parse(source)
    kinds = {type(node).__name__ for node in tree.body}
    assert kinds <= {"Expr", "Import", "ImportFrom", "ClassDef"}, kinds
    assert all(isinstance(node.value, ast.Constant) for node in tree.body if isinstance(node, ast.Expr))


def test_ir_json_holds_no_pickle_and_round_trips(ir: dict[str, Any]) -> None:
    text = json.dumps(ir)
    assert "pickle" not in text and ir["user_refs"] == []
    again = GraphModelSpace.load(text)
    assert json.dumps(again.dump()) == text
    x = torch.randn(2, 3)
    torch.manual_seed(0)
    a = GraphModelSpace.load(text).executable_model()
    torch.manual_seed(0)
    b = again.executable_model()
    assert torch.equal(a(x), b(x))
