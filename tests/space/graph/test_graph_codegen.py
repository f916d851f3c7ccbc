"""Generated code: readable, standalone, importable in a new process; objects from __main__."""

from __future__ import annotations

import ast
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from graph_corpus import CORPUS
from graph_support import run, run_standalone
from torch import nn

from nasflow.nn import LayerChoice, ModelSpace
from nasflow.space.graph import GraphModelSpace


def test_generated_code_runs_standalone_in_a_new_process(tmp_path: Path) -> None:
    cases, expected = {}, {}
    for index, name in enumerate(sorted(CORPUS)):
        space_cls, make_input = CORPUS[name]
        torch.manual_seed(index)
        space = GraphModelSpace.from_model(space_cls())
        sample: dict = {}
        space.random(sample, random.Random(index))
        model = space.freeze(sample)
        source = model.code()
        imported = {node.module if isinstance(node, ast.ImportFrom) else alias.name
                    for node in ast.parse(source).body if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in node.names}
        assert all(m == "math" or m.startswith("torch") for m in imported if name != "loop"), imported
        assert not any(m.startswith("nasflow") for m in imported)
        module = model.executable_model()
        assert any(isinstance(node, ast.ClassDef) and node.name == type(module).__name__
                   for node in ast.parse(source).body)
        x = make_input()
        expected[name] = run(module, x)
        cases[name] = (source, module, x)
    for name, got in run_standalone(cases, tmp_path).items():
        assert all((a - b).abs().max() < 1e-5 for a, b in zip(expected[name], got, strict=True))


def test_code_is_readable_pytorch() -> None:
    space = GraphModelSpace.from_model(CORPUS["cnn"][0]())
    sample = {"cnn/b1": 1, "cnn/b2": 1, "cnn/merge": [0, 2], "cnn/mix": [1, 2]}
    source = space.freeze(sample).code()
    assert "class CNNSpace(nn.Module):" in source and "def forward(self, x):" in source
    assert "self.b1__1 = ConvBNReLU_1()" in source  # the chosen candidate's sub-graph
    assert "nn.Conv2d(8, 8, 5, padding=2, bias=False)" in source
    assert "merge = torch.cat([stem, b2], dim=1)" in source  # the InputChoice rewired to a concatenation
    assert "mix_add0 = add + b2\n        mix = mix_add0 / 2" in source  # ... and to a mean
    assert "Sample: {'cnn/b1': 1" in source
    nb201 = GraphModelSpace.from_model(CORPUS["nb201"][0]())
    shared = nb201.freeze({label: "conv3x3" for label in nb201.simplify()}).code()
    assert shared.count("class NB201Cell") == 1 and shared.count("= NB201Cell()") == 2  # identical graphs, one class


MAIN_SCRIPT = """
import cloudpickle, sys, torch
from torch import nn
import nasflow
from nasflow.nn import LayerChoice, ModelSpace, ParametrizedModule
from nasflow.space.graph import GraphFormatError, GraphModelSpace

class Scale(ParametrizedModule):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor

class MainSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.scale = Scale(nasflow.choice("main/factor", [2.0, 3.0]))
        self.act = LayerChoice([nn.ReLU(), nn.Sigmoid()], label="main/act")

    def forward(self, x):
        return self.act(self.scale(self.fc(x)))

model = GraphModelSpace.from_model(MainSpace()).freeze({"main/factor": 3.0, "main/act": 1})
try:
    model.code()
    raise SystemExit("code() accepted a class from __main__")
except GraphFormatError as err:
    assert "'Scale', defined in __main__" in str(err) and "embed_main=True" in str(err), err
net = model.executable_model()  # this process's __main__ has Scale
x = torch.randn(2, 3)
assert torch.allclose(net(x), torch.sigmoid(net.fc(x) * 3.0))
open(sys.argv[1], "w").write(model.code(embed_main=True))
open(sys.argv[2], "wb").write(cloudpickle.dumps(model))  # as trials travel: classes of __main__ by value
print("ok")
"""

LOAD_SCRIPT = """
import importlib.util, pickle, sys
spec = importlib.util.spec_from_file_location("embedded", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
assert float(mod.MainSpace().scale.factor) == 3.0
model = pickle.loads(open(sys.argv[2], "rb").read())
assert float(model.executable_model().scale.factor) == 3.0
assert model.code(embed_main=True).count("Scale = cloudpickle.loads") == 1
print("ok")
"""


def test_objects_from_main_are_refused_or_embedded(tmp_path: Path) -> None:
    """A class from a script's __main__: code() names it; embedded, or with the model sent as trials are
    (cloudpickle), it runs elsewhere. The IR JSON itself holds only its name."""
    files = [str(tmp_path / "embedded.py"), str(tmp_path / "model.pkl")]
    for script in (MAIN_SCRIPT, LOAD_SCRIPT):
        (tmp_path / "script.py").write_text(script)
        result = subprocess.run([sys.executable, str(tmp_path / "script.py"), *files], capture_output=True,
                                text=True, timeout=120, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    assert "cloudpickle.loads(base64.b64decode(" in Path(files[0]).read_text()


class MainSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.act = LayerChoice([nn.ReLU(), nn.Sigmoid()], label="main/act")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


def test_a_space_has_no_code_until_frozen() -> None:
    space = GraphModelSpace.from_model(MainSpace())
    with pytest.raises(RuntimeError, match="freeze it with a sample"):
        space.code()
    with pytest.raises(RuntimeError, match="freeze it with a sample"):
        space.executable_model()
