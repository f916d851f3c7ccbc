"""The training-service engine on the real local training service, driven through NasExperiment.

Real worker processes, a real SQLite store: concurrency, every way a trial can die, streaming
metrics, stop and Ctrl-C leaving no process behind, user code defined in a script's ``__main__``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from support import HANG_GUARD_S, alive, descendants, reaped, wait_until, wait_while_running
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.execution import TrainingServiceExecutionEngine
from nasflow.experiment import ConfigError, ExperimentStore, NasExperiment, NasExperimentConfig
from nasflow.experiment.experiment import EXPERIMENT_STOPPED
from nasflow.experiment.store import ModelRecord
from nasflow.nn import ModelSpace, MutableLinear
from nasflow.space import ModelStatus, RawFormatModelSpace
from nasflow.strategy import Random
from nasflow.training_service import LocalTrainingService, TrialSpec
from nasflow.training_service import local as local_service
from nasflow.training_service.local import START_GRACE_S

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the local service targets Linux")


class Tiny(ModelSpace):
    """A real (small) space; ``widths`` decides its size."""

    def __init__(self, widths: tuple[int, ...] = (1,)) -> None:
        super().__init__()
        self.fc = MutableLinear(2, nasflow.choice("width", list(widths)))

    def forward(self, x: Any) -> Any:
        return self.fc(x)


def config(tmp_path: Path, **kwargs: Any) -> NasExperimentConfig:
    return NasExperimentConfig("ts", "simplified", "local", experiment_working_directory=str(tmp_path),
                               progress=False, **kwargs)


def records(exp: NasExperiment, tmp_path: Path) -> list[ModelRecord]:
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        return store.models(include_payload=False)


# ----- processes -----------------------------------------------------------------------------------






def still_alive(pids: list[int], limit: float = HANG_GUARD_S) -> list[int]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def pid_files(directory: Path) -> list[int]:
    return [int(p.stem) for p in directory.glob("*.pid")]


class ShiftedClock:
    """What the local training service reads as ``time``: the real module, with its monotonic clock
    moved forward on demand, so a test lets a timeout pass without waiting for it (or racing it)."""

    def __init__(self) -> None:
        self.shift = 0.0
        self.reads = 0

    def monotonic(self) -> float:
        self.reads += 1
        return time.monotonic() + self.shift

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class SubmitMarkingService(LocalTrainingService):
    """The local service, touching a file once a trial has been submitted to it."""

    def __init__(self, marker: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.marker = str(marker)

    def submit(self, trial: TrialSpec) -> None:
        super().submit(trial)
        Path(self.marker).touch()


@pytest.fixture
def service_clock(monkeypatch: pytest.MonkeyPatch) -> ShiftedClock:
    clock = ShiftedClock()
    monkeypatch.setattr(local_service, "time", clock)
    return clock


# ----- evaluators (run in workers; imported there from this module) --------------------------------


def misbehave(model: nn.Module, mode: str) -> None:
    """One way for a trial to end per mode."""
    nasflow.report_intermediate_result(0.25)
    if mode == "raise":
        raise ValueError("evaluator raised on purpose")
    if mode == "exit3":
        os._exit(3)
    if mode == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "timeout":
        time.sleep(3600)  # until the timeout kills it
    nasflow.report_final_result(1.0)


def hang(model: nn.Module, markers: str) -> None:
    (Path(markers) / f"{os.getpid()}.pid").touch()
    nasflow.report_intermediate_result(0.5)
    time.sleep(3600)


# ----- tests ---------------------------------------------------------------------------------------


def test_every_kind_of_trial_death_fails_only_that_model(tmp_path: Path, service_clock: ShiftedClock) -> None:
    modes = ["ok", "raise", "exit3", "sigkill", "timeout", "fine"]
    evaluator = FunctionalEvaluator(misbehave, mode=nasflow.choice("mode", modes))
    # Only a hang reaches the timeout: the hanging trial reaches it when the test moves the service's
    # clock past it, once every other trial ended and the hanging one reported its metric. No trial's
    # outcome depends on how fast the machine runs it.
    cfg = config(tmp_path, max_trial_number=len(modes), trial_concurrency=2, trial_timeout=HANG_GUARD_S)
    exp = NasExperiment(Tiny(), evaluator, Random(seed=0), cfg)
    exp.run(wait_completion=False)

    def only_the_hanging_trial_runs() -> bool:
        done = records(exp, tmp_path)
        return len(done) == len(modes) and all(
            (r.status, r.metrics.intermediates) == ("training", [0.25]) if r.sample["mode"] == "timeout"
            else r.status in ("trained", "failed") for r in done)

    wait_until(only_the_hanging_trial_runs, "every trial but the hanging one to end, and it to report")
    service_clock.shift = HANG_GUARD_S  # the hanging trial's timeout has passed
    assert exp.wait_completion() is True

    by_mode = {r.sample["mode"]: r for r in records(exp, tmp_path)}
    assert sorted(by_mode) == sorted(modes)  # dedup over a space of exactly len(modes) samples
    for name in ("ok", "fine"):
        assert by_mode[name].status == "trained" and by_mode[name].metrics.final == 1.0
    failures = {
        "raise": ["Traceback", "ValueError: evaluator raised on purpose"],
        "exit3": ["exited with code 3"],
        "sigkill": ["killed by signal SIGKILL"],
        "timeout": [f"timeout of {HANG_GUARD_S} s"],
    }
    for name, phrases in failures.items():
        record = by_mode[name]
        assert record.status == "failed", (name, record)
        for phrase in phrases:
            assert phrase in (record.error or ""), (name, record.error)
    for record in by_mode.values():  # the metric reported before dying is kept
        assert record.metrics.intermediates == [0.25]
        assert record.trial_id and record.trial_id.startswith(f"{record.model_id}-")
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        assert store.experiment().status == "done"
    statuses = sorted(m.status.value for m in exp.list_models())
    assert statuses == ["failed"] * 4 + ["trained"] * 2
    assert still_alive(descendants(os.getpid())) == []  # the fork server and every worker are gone


def test_trials_overlap_stream_metrics_and_stop_leaves_no_process(tmp_path: Path) -> None:
    markers, workdir = tmp_path / "markers", tmp_path / "exps"
    markers.mkdir()
    cfg = config(workdir, max_trial_number=4, trial_concurrency=2)
    exp = NasExperiment(Tiny((1, 2, 3, 4)), FunctionalEvaluator(hang, markers=str(markers)), Random(seed=0), cfg)
    exp.run(wait_completion=False)

    def both_streaming() -> bool:
        running = [r for r in records(exp, workdir) if r.status == "training"]
        return len(running) == 2 and all(r.metrics.intermediates == [0.5] for r in running)

    # Two models training at once, each with the metric its (still running) trial reported.
    wait_until(both_streaming, what="two running trials with their intermediate metric in the store")
    assert [m.status for m in exp.list_models()] == [ModelStatus.Training] * 2
    assert [m.metrics.intermediates for m in exp.list_models()] == [[0.5], [0.5]]
    wait_until(lambda: len(pid_files(markers)) == 2, what="the trials' pid files")
    workers = pid_files(markers)
    assert all(alive(pid) for pid in workers) and workers[0] != workers[1]
    processes = descendants(os.getpid())
    assert set(workers) < set(processes)  # the workers, plus the fork server

    exp.stop()  # returns although both trials would hang for an hour
    assert exp.wait_completion() is False
    assert still_alive(processes) == []
    done = records(exp, workdir)
    assert len(done) == 2
    assert all(r.status == "interrupted" and r.error == EXPERIMENT_STOPPED for r in done)
    assert all(r.metrics.intermediates == [0.5] for r in done)
    with ExperimentStore.open(workdir / exp.id, read_only=True) as store:
        assert store.experiment().status == "stopped"


def test_trial_timeout_counts_from_the_trials_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     service_clock: ShiftedClock) -> None:
    """A fork server whose start-up outlasts the trial timeout does not eat into it: the start-up (an
    import) is held on a gate while the service's clock moves past the timeout, and the trial trains."""
    gate, modules = tmp_path / "finish-import", tmp_path / "modules"
    modules.mkdir()
    (modules / "gated_import.py").write_text(textwrap.dedent(f"""
        # A slow start-up (a large framework), as long as the test likes.
        import os, time
        deadline = time.monotonic() + 600
        while not os.path.exists({str(gate)!r}) and time.monotonic() < deadline:
            time.sleep(0.01)
    """))
    monkeypatch.syspath_prepend(str(modules))  # the fork server gets this process's sys.path
    evaluator = FunctionalEvaluator(misbehave, mode="ok")
    submitted = tmp_path / "submitted"
    service = SubmitMarkingService(submitted, trial_concurrency=1, log_dir=tmp_path / "logs",
                                   preload=("torch", "nasflow", "gated_import"))
    cfg = NasExperimentConfig("ts", "simplified", service, experiment_working_directory=str(tmp_path),
                              progress=False, max_trial_number=1, trial_timeout=HANG_GUARD_S)
    exp = NasExperiment(Tiny(), evaluator, Random(), cfg)
    exp.run(wait_completion=False)
    wait_until(submitted.exists, "the trial's submission")
    # Past the timeout, yet within the start-up guard that applies before the trial starts.
    service_clock.shift = HANG_GUARD_S + START_GRACE_S / 2
    reads = service_clock.reads
    wait_until(lambda: service_clock.reads >= reads + 2, "the service to check timeouts on the moved clock")
    gate.touch()
    assert exp.wait_completion() is True
    [record] = records(exp, tmp_path)
    assert record.status == "trained", record.error


def test_raw_format_is_refused_before_anything_runs(tmp_path: Path) -> None:
    def evaluate(model: nn.Module) -> None:
        nasflow.report_final_result(0.0)

    raw = NasExperimentConfig("ts", "raw", "local", experiment_working_directory=str(tmp_path), progress=False)
    exp = NasExperiment(Tiny(), FunctionalEvaluator(evaluate), Random(), raw)
    with pytest.raises(ConfigError, match="model_format.*raw-format model cannot leave this process") as info:
        exp.run()
    assert info.value.field == "model_format"
    assert not (tmp_path / exp.id).exists()

    service = LocalTrainingService(trial_concurrency=1, log_dir=tmp_path / "logs")
    engine = TrainingServiceExecutionEngine(service)
    model = RawFormatModelSpace.from_model(Tiny(), FunctionalEvaluator(evaluate)).freeze({"width": 1})
    with pytest.raises(TypeError, match="raw-format model cannot leave this process.*'sequential'"):
        engine.submit_models(model)
    assert service.server_pid is None  # no worker was ever started for it
    assert list(engine.list_models()) == []
    engine.shutdown()


# ----- experiments run as scripts ----------------------------------------------------------------

SCRIPT = textwrap.dedent('''
    """A search whose space and evaluator live in __main__: workers get them by value.

    The first two trials finish; later ones report and then hang until the experiment is stopped.
    """
    import json
    import os
    import sys
    import time
    from pathlib import Path

    import torch

    import nasflow
    from nasflow.evaluator import FunctionalEvaluator
    from nasflow.experiment import NasExperiment, NasExperimentConfig
    from nasflow.nn import ModelSpace, MutableLinear
    from nasflow.strategy import Random


    class ScriptSpace(ModelSpace):
        def __init__(self, n_in):
            super().__init__()
            self.fc = MutableLinear(n_in, nasflow.choice("width", [2, 3, 4, 5, 6]))

        def forward(self, x):
            return self.fc(x)


    def evaluate(model, markers):
        (Path(markers) / f"{os.getpid()}.pid").touch()
        width = model(torch.ones(1, 7)).shape[1]
        nasflow.report_intermediate_result(float(width))
        if len(list(Path(markers).glob("*.pid"))) > 2:
            time.sleep(3600)
        nasflow.report_final_result(float(width))


    if __name__ == "__main__":
        workdir, markers = sys.argv[1], sys.argv[2]
        config = NasExperimentConfig("ts", "simplified", "local", max_trial_number=5, trial_concurrency=2,
                                     experiment_working_directory=workdir, progress=False)
        experiment = NasExperiment(ScriptSpace(7), FunctionalEvaluator(evaluate, markers=markers),
                                   Random(seed=3), config, id="script")
        completed = experiment.run()
        print(json.dumps({"completed": completed}))
''')


def test_main_defined_space_runs_in_workers_and_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    script, markers, workdir = tmp_path / "search.py", tmp_path / "markers", tmp_path / "exps"
    script.write_text(SCRIPT)
    markers.mkdir()
    with reaped(subprocess.Popen([sys.executable, str(script), str(workdir), str(markers)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)) as process:
        wait_while_running(process, lambda: len(pid_files(markers)) == 4, "two finished and two running trials")

        def two_hanging() -> list[int] | None:  # fresh mode: the finished trials' workers exit (soon)
            live = [pid for pid in pid_files(markers) if alive(pid)]
            return live if len(live) == 2 else None

        hanging = wait_until(two_hanging, "the finished trials' workers to exit")
        processes = descendants(process.pid)
        assert set(hanging) < set(processes)
        with ExperimentStore.open(workdir / "script", read_only=True) as store:
            wait_until(lambda: store.count_models("training") == 2, what="both hanging trials running")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=HANG_GUARD_S)
    assert process.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {"completed": False}
    assert "nasflow resume script" in err
    assert still_alive(processes) == []

    with ExperimentStore.open(workdir / "script", read_only=True) as store:
        assert store.experiment().status == "stopped"
        done = store.models(include_payload=False)
    # Which two trials hang depends on which workers touched their pid file first, not on model ids.
    trained = [r for r in done if r.status == "trained"]
    interrupted = [r for r in done if r.status == "interrupted"]
    assert len(done) == 4 and len(trained) == len(interrupted) == 2, [r.status for r in done]
    for record in done:  # the worker built the model its sample describes, from classes in __main__
        assert record.metrics.intermediates == [record.sample["width"]]
    assert all(r.metrics.final == r.sample["width"] for r in trained)
    assert all(r.error == EXPERIMENT_STOPPED and r.metrics.final is None for r in interrupted)
