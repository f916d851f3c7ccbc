"""Generated code: readable, standalone, importable in a new process; objects from __main__."""

from __future__ import annotations

import ast
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest
import torch
from graph_corpus import CORPUS
from torch import nn

import nasflow
from nasflow.nn import LayerChoice, ModelSpace, ParametrizedModule
from nasflow.space.graph import GraphFormatError, GraphModelSpace

HERE = Path(__file__).parent

RUNNER = """
import importlib.util, sys, torch
for path, inputs, out in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    spec = importlib.util.spec_from_file_location("generated_" + str(abs(hash(path))), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = torch.load(inputs)
    net = getattr(module, data["root"])()
    net.load_state_dict(data["state"])
    with torch.no_grad():
        torch.save(net.eval()(data["x"]), out)
print("ok")
"""


def _flat(output: object) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _flat(item)]
    if isinstance(output, dict):
        return [t for key in sorted(output) for t in _flat(output[key])]
    return [torch.tensor(float(output))]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}


def test_generated_code_runs_standalone_in_a_new_process(tmp_path: Path) -> None:
    argv, expected = [], []
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
        module = model.executable_model().eval()
        root = next(node.name for node in ast.parse(source).body
                    if isinstance(node, ast.ClassDef) and node.name == type(module).__name__)
        x = make_input()
        with torch.no_grad():
            expected.append(_flat(module(x)))
        code_file, inputs, out = tmp_path / f"{name}_model.py", tmp_path / f"{name}.in", tmp_path / f"{name}.out"
        code_file.write_text(source)
        torch.save({"root": root, "state": module.state_dict(), "x": x}, inputs)
        argv += [str(code_file), str(inputs), str(out)]
    result = subprocess.run([sys.executable, "-c", RUNNER, *argv], capture_output=True, text=True, env=_env(),
                            timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for out_path, want in zip(argv[2::3], expected, strict=True):
        got = _flat(torch.load(out_path))
        assert all((a - b).abs().max() < 1e-5 for a, b in zip(want, got, strict=True))


def test_code_is_readable_pytorch() -> None:
    space = GraphModelSpace.from_model(CORPUS["cnn"][0]())
    sample = {"cnn/b1": 1, "cnn/b2": 1, "cnn/merge": [0, 2], "cnn/mix": [1, 2]}
    source = space.freeze(sample).code()
    assert "class CNNSpace(nn.Module):" in source and "def forward(self, x):" in source
    assert "self.b1__1 = ConvBNReLU()" in source  # the chosen candidate's sub-graph
    assert "nn.Conv2d(8, 8, 5, padding=2, bias=False)" in source
    assert "torch.cat([stem, b2], dim=1)" in source  # the InputChoice rewired to a concatenation
    assert "/ 2" in source  # ... and to a mean
    assert "Sample: {'cnn/b1': 1" in source
    assert source.count("class ConvBNReLU") == 1  # identical graphs share one class


class Scale(ParametrizedModule):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class MainSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.scale = Scale(nasflow.choice("main/factor", [2.0, 3.0]))
        self.act = LayerChoice([nn.ReLU(), nn.Sigmoid()], label="main/act")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.scale(self.fc(x)))


@pytest.fixture
def main_scale(monkeypatch: pytest.MonkeyPatch) -> type:
    """``Scale`` as if a script had defined it in __main__."""
    monkeypatch.setattr(Scale, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "Scale", Scale, raising=False)
    return Scale


def test_objects_from_main_are_refused_or_embedded(main_scale: type, tmp_path: Path) -> None:
    space = GraphModelSpace.from_model(MainSpace())
    model = space.freeze({"main/factor": 3.0, "main/act": 1})
    with pytest.raises(GraphFormatError, match="'Scale', defined in __main__.*embed_main=True"):
        model.code()
    module = model.executable_model()  # in this process __main__ has it
    x = torch.randn(2, 3)
    assert torch.allclose(module(x), torch.sigmoid(module.fc(x) * 3.0))
    embedded = model.code(embed_main=True)
    assert "cloudpickle.loads(base64.b64decode(" in embedded
    payload = cloudpickle.dumps(model)
    assert model.__getstate__()["main"] is not None
    (tmp_path / "embedded.py").write_text(embedded)
    (tmp_path / "model.pkl").write_bytes(payload)
    script = (
        "import importlib.util, pickle, torch\n"
        f"spec = importlib.util.spec_from_file_location('embedded', {str(tmp_path / 'embedded.py')!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "net = mod.MainSpace(); assert float(net.scale.factor) == 3.0\n"
        f"model = pickle.loads(open({str(tmp_path / 'model.pkl')!r}, 'rb').read())\n"
        "other = model.executable_model(); assert float(other.scale.factor) == 3.0\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    restored = pickle.loads(payload)
    assert restored.code(embed_main=True).count("Scale = cloudpickle.loads") == 1


def test_a_space_has_no_code_until_frozen() -> None:
    space = GraphModelSpace.from_model(MainSpace())
    with pytest.raises(RuntimeError, match="freeze it with a sample"):
        space.code()
    with pytest.raises(RuntimeError, match="freeze it with a sample"):
        space.executable_model()
