"""Graph-format experiments: trials run on the sequential and local engines, and the best models
export as PyTorch source that runs standalone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import NasExperiment, NasExperimentConfig
from nasflow.nn import LayerChoice, ModelSpace, MutableLinear
from nasflow.strategy import GridSearch


class TinySpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        width = nasflow.choice("width", [4, 8, 16])
        self.fc = MutableLinear(6, width)
        self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act")
        self.head = MutableLinear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.fc(x)))


def width_metric(model: nn.Module) -> None:
    """The metric is the hidden width (+0.5 for ReLU): the best model is known in advance.

    It reads the architecture through the module tree, not attribute names, which differ between
    formats (the graph format names a chosen candidate after its path, e.g. ``act__relu``)."""
    out = model(torch.randn(3, 6))
    assert out.shape == (3, 2)
    width = next(m for m in model.modules() if isinstance(m, nn.Linear)).out_features
    relu = any(isinstance(m, nn.ReLU) for m in model.modules())
    nasflow.report_final_result(float(width) + 0.5 * relu)


@pytest.mark.parametrize("engine", ["sequential", "ts"])
def test_graph_experiment_runs_and_exports_code(engine: str, tmp_path: Path) -> None:
    config = NasExperimentConfig(engine, "graph", None if engine == "sequential" else "local",
                                 experiment_working_directory=str(tmp_path), progress=False)
    if engine == "ts":
        config.trial_concurrency = 2
    experiment = NasExperiment(TinySpace(), FunctionalEvaluator(width_metric), GridSearch(shuffle=False), config)
    assert experiment.run()
    models = experiment.list_models()
    assert len(models) == 6 and all(m.status.value == "trained" for m in models)
    assert experiment.export_top_models(1) == [{"width": 16, "act": "relu"}]

    source = experiment.export_top_models(1, formatter="code")[0]
    assert "nn.Linear(6, 16)" in source and "nn.ReLU()" in source
    script = tmp_path / "best.py"
    script.write_text(source + "\n\nimport torch\nmodel = TinySpace()\nprint(tuple(model(torch.randn(5, 6)).shape))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(5, 2)"

    cli = subprocess.run([sys.executable, "-m", "nasflow.cli", "export", experiment.id, "--dir", str(tmp_path),
                          "--format", "code"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert "class TinySpace(nn.Module)" in cli.stdout
