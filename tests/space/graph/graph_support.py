"""Helpers of the graph-format tests: flattening outputs, and running generated code in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).parent

RUNNER = """
import importlib.util, sys, torch
for path, data_path, out in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    spec = importlib.util.spec_from_file_location("generated_" + str(abs(hash(path))), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = torch.load(data_path)
    net = getattr(module, data["root"])()
    net.load_state_dict(data["state"])
    with torch.no_grad():
        torch.manual_seed(7)
        torch.save(net.eval()(data["x"]), out)
print("ok")
"""


def flat(output: Any) -> list[torch.Tensor]:
    """The tensors of a model output (tuples, lists, dicts by sorted key; numbers as tensors)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in flat(item)]
    if isinstance(output, dict):
        return [t for key in sorted(output) for t in flat(output[key])]
    return [torch.tensor(float(output))]


def run(module: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """``module(x)`` in eval mode, with the random draws the fresh process makes too."""
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(7)
        return flat(module.eval()(x.clone()))


def run_standalone(cases: dict[str, tuple[str, nn.Module, torch.Tensor]], folder: Path) -> dict[str, list[Any]]:
    """Each case's generated ``source`` run in one fresh process (its root class: ``module``'s, with
    ``module``'s weights) on ``x``; the flattened outputs by case name."""
    argv = []
    for name, (source, module, x) in cases.items():
        files = [folder / f"{name}_model.py", folder / f"{name}.pt", folder / f"{name}.out"]
        files[0].write_text(source)
        torch.save({"root": type(module).__name__, "state": module.state_dict(), "x": x}, files[1])
        argv += [str(f) for f in files]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", RUNNER, *argv], capture_output=True, text=True, env=env,
                            timeout=300, cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return {name: flat(torch.load(out)) for name, out in zip(cases, argv[2::3], strict=True)}
