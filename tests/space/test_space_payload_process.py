"""A simplified model's payload rebuilds the same architecture in a new process.

Two ways a space's class travels: by value (defined in ``__main__`` of the sending process, which
the receiver cannot import) and by import path (a module both processes can import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SPACE_SOURCE = textwrap.dedent(
    '''
    import torch
    from torch import nn

    import nasflow
    from nasflow.nn import LayerChoice, ModelSpace, MutableLinear, Repeat


    class TravelSpace(ModelSpace):
        def __init__(self, in_dim, classes=2):
            super().__init__()
            width = nasflow.choice("width", [4, 8, 16])
            self.stem = MutableLinear(in_dim, width)
            self.body = Repeat(lambda i: LayerChoice([MutableLinear(width, width), nn.Tanh()]), (1, 3), label="body")
            self.head = MutableLinear(width, classes)

        def forward(self, x):
            return self.head(self.body(self.stem(x)))
    '''
)

DESCRIBE = textwrap.dedent(
    '''
    def describe(model):
        return {
            "class": type(model).__name__,
            "modules": [[n, type(m).__name__] for n, m in model.named_modules()],
            "parameters": [[n, list(p.shape)] for n, p in model.named_parameters()],
            "output": list(model(__import__("torch").zeros(2, 5)).shape),
        }
    '''
)

LOAD = DESCRIBE + textwrap.dedent(
    '''
    import json, sys
    from nasflow.space import SimplifiedModelSpace
    model = SimplifiedModelSpace.from_payload(open(sys.argv[1], "rb").read())
    print(json.dumps({"sample": model.sample, "status": model.status.value, **describe(model.executable_model())}))
    '''
)

SAMPLE = {"width": 16, "body": 3, "body/1": 0, "body/2": 1, "body/3": 0}


def run(args: list[str], cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def check_architecture(described: dict) -> None:
    assert described["class"] == "TravelSpace"
    assert described["output"] == [2, 3]
    parameters = dict((name, shape) for name, shape in described["parameters"])
    assert parameters["stem.weight"] == [16, 5] and parameters["head.weight"] == [3, 16]
    assert parameters["body.0.weight"] == [16, 16] and parameters["body.2.weight"] == [16, 16]
    assert ["body.1", "Tanh"] in described["modules"] and "body.3" not in dict(described["modules"])


@pytest.fixture
def workdir(tmp_path: Path) -> dict[str, Path]:
    dirs = {name: tmp_path / name for name in ("sender", "receiver", "modules")}
    for path in dirs.values():
        path.mkdir()
    return dirs


def test_payload_of_a_main_module_space_round_trips_through_a_new_process(workdir: dict[str, Path]) -> None:
    script = workdir["sender"] / "make_payload.py"
    script.write_text(
        SPACE_SOURCE
        + DESCRIBE
        + textwrap.dedent(
            '''
            if __name__ == "__main__":
                import json, sys
                from nasflow.space import SimplifiedModelSpace
                space = SimplifiedModelSpace.from_model(TravelSpace(5, classes=3))
                model = space.freeze(json.loads(sys.argv[2]))
                open(sys.argv[1], "wb").write(model.to_payload())
                print(json.dumps(describe(model.executable_model())))
            '''
        )
    )
    payload = workdir["receiver"] / "model.bin"
    sent = run([str(script), str(payload), json.dumps(SAMPLE)], cwd=workdir["sender"])
    assert sent.returncode == 0, sent.stderr
    # the receiver runs elsewhere and cannot import the sender's script: the class travels by value
    received = run(["-c", LOAD, str(payload)], cwd=workdir["receiver"])
    assert received.returncode == 0, received.stderr
    before, after = json.loads(sent.stdout), json.loads(received.stdout)
    check_architecture(before)
    assert {k: after[k] for k in before} == before
    assert after["sample"] == SAMPLE and after["status"] == "frozen"


def test_payload_of_an_importable_space_travels_by_import_path(workdir: dict[str, Path]) -> None:
    (workdir["modules"] / "travel_spaces.py").write_text(SPACE_SOURCE)
    payload = workdir["receiver"] / "model.bin"
    make = textwrap.dedent(
        f'''
        import json, sys
        from nasflow.space import SimplifiedModelSpace
        from travel_spaces import TravelSpace
        model = SimplifiedModelSpace.from_model(TravelSpace(5, classes=3)).freeze({SAMPLE!r})
        open(sys.argv[1], "wb").write(model.to_payload())
        '''
    )
    sent = run(["-c", make, str(payload)], cwd=workdir["sender"], pythonpath=workdir["modules"])
    assert sent.returncode == 0, sent.stderr
    data = payload.read_bytes()
    assert b"travel_spaces" in data and b"TravelSpace" in data
    assert b"MutableLinear" not in data  # the class is referenced by path, its code is not in the payload
    received = run(["-c", LOAD, str(payload)], cwd=workdir["receiver"], pythonpath=workdir["modules"])
    assert received.returncode == 0, received.stderr
    after = json.loads(received.stdout)
    check_architecture(after)
    assert after["sample"] == SAMPLE
