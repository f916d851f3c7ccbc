"""The ``nasflow`` command: run a script, then list, show, export and resume, always under ``--dir``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from support import HANG_GUARD_S, wait_until
from torch import nn

import nasflow
from nasflow.cli import main
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import ExperimentStore, NasExperiment, NasExperimentConfig
from nasflow.nn import ModelSpace, MutableLinear
from nasflow.strategy import Random

SCRIPT = textwrap.dedent('''
    """A search run by `nasflow run`; its space and evaluator live in __main__."""
    import sys

    import nasflow
    from nasflow.evaluator import FunctionalEvaluator
    from nasflow.experiment import NasExperiment, NasExperimentConfig
    from nasflow.nn import ModelSpace, MutableLinear
    from nasflow.strategy import Random


    class CliSpace(ModelSpace):
        def __init__(self):
            super().__init__()
            self.fc = MutableLinear(2, nasflow.choice("width", [1, 2, 3, 4, 5, 6]))

        def forward(self, x):
            return self.fc(x)


    def evaluate(model):
        nasflow.report_intermediate_result(0.0)
        nasflow.report_final_result(model.fc.out_features / 10)


    if __name__ == "__main__":
        assert __name__ == "__main__" and sys.argv[0].endswith("search.py"), sys.argv
        config = NasExperimentConfig("sequential", "simplified", max_trial_number=4,
                                     experiment_working_directory=sys.argv[1], progress=False)
        NasExperiment(CliSpace(), FunctionalEvaluator(evaluate), Random(seed=0), config, id="clirun").run()
''')


def nasflow_command() -> list[str]:
    script = Path(sys.executable).parent / "nasflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nasflow.cli"]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``nasflow ARGS`` in this process; its exit code and what it printed."""
    code = main(list(args))
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding experiment ``clirun``, made by ``nasflow run search.py DIR``."""
    base = tmp_path_factory.mktemp("cli")
    (base / "search.py").write_text(SCRIPT)
    workdir = base / "exps"
    result = subprocess.run([*nasflow_command(), "run", str(base / "search.py"), str(workdir)],
                            capture_output=True, text=True, timeout=120, cwd=base)
    assert result.returncode == 0, result.stderr
    return workdir


def test_run_then_list(ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ExperimentStore.open(ran / "clirun", read_only=True) as store:
        assert store.experiment().status == "done"
        assert store.count_models("trained") == 4
    code, out = cli(capsys, "list", "--dir", str(ran))
    assert code == 0
    row = next(line for line in out.splitlines() if "clirun" in line)
    cells = [cell.strip() for cell in row.split("│") if cell.strip()]
    assert cells[:7] == ["clirun", "clirun", "done", "4", "0", "0", "4"]  # trained, failed, interrupted, total


def test_show(ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = cli(capsys, "show", "clirun", "--dir", str(ran), "--top-k", "2")
    assert code == 0
    assert "clirun" in out and "done, 4 models" in out
    assert "Trials" in out and "Top 2 models" in out
    assert out.count("trained") == 4


def test_export_dict_best_first(ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = cli(capsys, "export", "clirun", "--dir", str(ran), "--top-k", "3", "--format", "dict")
    assert code == 0
    exported = json.loads(out)
    with ExperimentStore.open(ran / "clirun", read_only=True) as store:
        records = store.models(include_payload=False)
    best = sorted(records, key=lambda r: -r.metrics.final)[:3]  # type: ignore[operator]
    assert exported == [r.sample for r in best]
    assert [s["width"] for s in exported] == sorted((s["width"] for s in exported), reverse=True)


def test_export_to_a_file(ran: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "best.json"
    code, out = cli(capsys, "export", "clirun", "--dir", str(ran), "--output", str(target))
    assert code == 0 and "Wrote 1 model(s)" in out
    assert len(json.loads(target.read_text())) == 1


def test_export_code_of_a_simplified_experiment_is_a_clear_error(ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = cli(capsys, "export", "clirun", "--dir", str(ran), "--format", "code")
    assert code == 2
    assert "error:" in out and "graph model format" in " ".join(out.split())


def test_export_code_through_the_real_command(ran: Path) -> None:
    result = subprocess.run([*nasflow_command(), "export", "clirun", "--dir", str(ran), "--format", "code"],
                            capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 2
    assert "graph model format" in " ".join(result.stdout.split())


def test_unknown_experiment_and_unreadable_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="No experiment 'nope'.*nasflow list"):
        main(["show", "nope", "--dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="No experiment 'nope'"):
        main(["export", "nope", "--dir", str(tmp_path)])
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "nasflow.db").write_bytes(b"garbage" * 100)
    code, out = cli(capsys, "list", "--dir", str(tmp_path))
    assert code == 0 and "broken" in out and "unreadable" in out
    code, out = cli(capsys, "resume", "nope", "--dir", str(tmp_path))
    assert code == 2 and "No experiment 'nope'" in out
    with pytest.raises(SystemExit, match="No script at"):
        main(["run", str(tmp_path / "missing.py")])


# ----- resume -------------------------------------------------------------------------------------


class Tiny(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.fc = MutableLinear(2, nasflow.choice("width", [1, 2, 3, 4, 5, 6]))

    def forward(self, x: Any) -> Any:
        return self.fc(x)


def slow_while_flagged(model: nn.Module, flag: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while Path(flag).exists() and time.monotonic() < deadline:
        nasflow.report_intermediate_result(0.0)
        time.sleep(0.01)
    nasflow.report_final_result(model.fc.out_features / 10)


def test_resume_a_stopped_experiment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flag = tmp_path / "slow"
    flag.touch()
    config = NasExperimentConfig("sequential", "simplified", max_trial_number=4,
                                 experiment_working_directory=str(tmp_path), progress=False)
    exp = NasExperiment(Tiny(), FunctionalEvaluator(slow_while_flagged, flag=str(flag)), Random(seed=0), config)
    exp.run(wait_completion=False)
    store = ExperimentStore.open(tmp_path / exp.id, read_only=True)
    wait_until(lambda: store.count_models("training") >= 1, "a model to start training")
    exp.stop()
    assert exp.wait_completion() is False
    assert store.experiment().status == "stopped" and store.count_models() == 1
    store.close()

    flag.unlink()
    code = main(["resume", exp.id, "--dir", str(tmp_path)])
    assert code == 0 and f"Experiment {exp.id} done: 4 trained, 0 failed" in capsys.readouterr().err
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        assert store.experiment().status == "done"
        assert store.count_models("trained") == 4 and store.count_models() == 4
    code, out = cli(capsys, "list", "--dir", str(tmp_path))
    assert code == 0 and exp.id in out and "done" in out


def test_resume_of_a_running_experiment_is_refused(ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ExperimentStore.open(ran / "clirun")  # the writer: holds the owner lock, as a running experiment does
    try:
        code, out = cli(capsys, "resume", "clirun", "--dir", str(ran))
        out = " ".join(out.split())
        assert code == 2 and f"Experiment 'clirun' is running in process {os.getpid()}" in out
        assert "`nasflow resume clirun` then continues it), or choose another experiment id" in out
        assert store.experiment().status == "done"
    finally:
        store.close()


# ----- commands that only read the store stay torch-free ------------------------------------------

VISIT_THEN_CTRL_C = textwrap.dedent('''
    import os, signal, threading, urllib.request
    import nasflow.dashboard

    serve = nasflow.dashboard.serve

    def visiting(*args, **kwargs):
        """The real dashboard, read through its API once, then Ctrl-C (as a user would)."""
        dashboard = serve(*args, **kwargs)

        def visit():
            for path in ("api/summary", "api/trials", "api/export?format=dict&top_k=2"):
                with urllib.request.urlopen(dashboard.url + path) as response:
                    assert response.status == 200, path
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=visit, daemon=True).start()
        return dashboard

    nasflow.dashboard.serve = visiting
''')


@pytest.mark.parametrize(("command", "expected_code"), [
    (["list"], 0), (["show", "clirun"], 0), (["export", "clirun", "--format", "dict", "--top-k", "2"], 0),
    (["logs", "clirun", "0"], 1), (["stop", "clirun"], 1), (["view", "clirun", "--port", "0"], 0),
])
def test_read_only_commands_never_import_torch(ran: Path, command: list[str], expected_code: int) -> None:
    """Each in a fresh process, on a real store: reading one must not pay for torch's import (seconds)."""
    code = (VISIT_THEN_CTRL_C if command[0] == "view" else "") + textwrap.dedent(f"""
        import sys
        from nasflow.cli import main
        code = main({[*command, "--dir", str(ran)]!r})
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
        print("RESULT", code, loaded)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"RESULT {expected_code} []", done.stdout + done.stderr
