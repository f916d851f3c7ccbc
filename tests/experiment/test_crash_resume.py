"""Crash safety with real processes: SIGKILL an experiment mid-run, resume it, lose and repeat nothing.

The search runs as a script in a subprocess. Its evaluator appends ``begin <width> <pid>`` to a log
before training, so every run of every sample is on record, whichever process ran it. After the
kill the experiment is resumed in this process (its space and evaluator come out of the store: they
lived in the script's ``__main__``), and the store and the log are checked against each other.
"""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import HANG_GUARD_S, alive, descendants, reaped, wait_until, wait_while_running

from nasflow.cli import main
from nasflow.experiment import ExperimentStore, NasExperiment
from nasflow.experiment.experiment import EXPERIMENT_FAILED
from nasflow.experiment.store import ModelRecord, StoreLockedError

MAX_TRIALS = 8

SCRIPT = textwrap.dedent('''
    import os
    import sys
    import time

    import nasflow
    from nasflow.evaluator import FunctionalEvaluator
    from nasflow.experiment import NasExperiment, NasExperimentConfig
    from nasflow.nn import ModelSpace, MutableLinear
    from nasflow.strategy import Random


    class CrashSpace(ModelSpace):
        def __init__(self):
            super().__init__()
            self.fc = MutableLinear(3, nasflow.choice("width", list(range(1, 41))))

        def forward(self, x):
            return self.fc(x)


    def evaluate(model, log):
        width = model.fc.out_features
        with open(log, "a") as f:
            f.write(f"begin {width} {os.getpid()}\\n")
        for step in range(4):
            nasflow.report_intermediate_result(width + step / 10)
            time.sleep(0.06)
        nasflow.report_final_result(float(width))


    if __name__ == "__main__":
        engine, workdir, log = sys.argv[1:4]
        if engine == "sequential":
            config = NasExperimentConfig("sequential", "simplified")
        else:
            config = NasExperimentConfig("ts", "simplified", "local", trial_concurrency=2)
        config.max_trial_number = int(sys.argv[4])
        config.experiment_working_directory = workdir
        config.progress = False
        NasExperiment(CrashSpace(), FunctionalEvaluator(evaluate, log=log), Random(seed=7), config, id="crash").run()
''')






def begins(log: Path) -> collections.Counter[int]:
    """How many times each width started training."""
    return collections.Counter(int(line.split()[1]) for line in log.read_text().splitlines())


def snapshot(store_dir: Path) -> list[ModelRecord]:
    with ExperimentStore.open(store_dir, read_only=True) as store:
        return store.models(include_payload=False)


def mid_run(store_dir: Path) -> bool:
    """At least two models finished, and one is training with a metric already reported."""
    if not (store_dir / "nasflow.db").exists():
        return False
    try:
        records = snapshot(store_dir)
    except Exception:  # the store is being created
        return False
    trained = sum(r.status == "trained" for r in records)
    return trained >= 2 and any(r.status == "training" and r.metrics.intermediates for r in records)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and the local service")
@pytest.mark.parametrize("engine", ["sequential", "local"])
def test_sigkill_mid_run_then_resume_loses_and_repeats_nothing(tmp_path: Path, engine: str) -> None:
    script, workdir, log = tmp_path / "search.py", tmp_path / "exps", tmp_path / "runs.log"
    script.write_text(SCRIPT)
    store_dir = workdir / "crash"
    with reaped(subprocess.Popen([sys.executable, str(script), engine, str(workdir), str(log), str(MAX_TRIALS)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)) as process:
        wait_while_running(process, lambda: mid_run(store_dir), "the experiment to get going")
        children = descendants(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait(HANG_GUARD_S)  # reaped: a zombie would look like a live experiment to resume
    assert process.returncode == -signal.SIGKILL

    # The fork server and its workers die with the experiment process.
    wait_until(lambda: not any(alive(pid) for pid in children), "the experiment's workers to die with it")

    runs_before = begins(log)
    before = snapshot(store_dir)
    finished_before = {r.sample["width"] for r in before if r.status == "trained"}
    unfinished_before = {r.sample["width"] for r in before if r.status in ("frozen", "training")}
    assert len(finished_before) >= 2 and unfinished_before
    assert len(before) < MAX_TRIALS, "the kill came too late to test anything"
    with ExperimentStore.open(store_dir, read_only=True) as store:
        assert store.experiment().status == "running"  # as the killed process left it

    resumed = NasExperiment.resume("crash", experiment_working_directory=str(workdir))
    after = snapshot(store_dir)

    # Exactly the budget, all trained, every sample once.
    assert [r.status for r in after] == ["trained"] * MAX_TRIALS, [(r.status, r.error) for r in after]
    widths = [r.sample["width"] for r in after]
    assert len(set(widths)) == MAX_TRIALS
    # Everything reported before the kill is still there.
    after_by_id = {r.model_id: r for r in after}
    for old in before:
        new = after_by_id[old.model_id]
        assert new.sample == old.sample
        assert new.metrics.intermediates[: len(old.metrics.intermediates)] == old.metrics.intermediates
        if old.status == "trained":
            assert new.metrics == old.metrics and new.history == old.history
    # Finished models never ran again; every other model ran exactly once after the resume.
    runs = begins(log)
    assert set(runs) == set(widths)
    assert all(runs_before[width] == 1 for width in finished_before)
    for width in widths:
        again = 0 if width in finished_before else 1
        assert runs[width] == runs_before[width] + again, (width, runs_before, runs)
    assert any(runs[width] == 2 for width in unfinished_before)  # the one killed mid-training re-ran
    for record in after:
        assert record.metrics.final == record.sample["width"]
    with ExperimentStore.open(store_dir, read_only=True) as store:
        assert store.experiment().status == "done"
    assert resumed.export_top_models(1) == [{"width": max(widths)}]


# ----- one owner at a time, atomic creation, a full disk ------------------------------------------

OWNED = textwrap.dedent('''
    """A search whose trainings wait while a gate file exists, so that a test holds it mid-run.

    argv: run|resume, the experiments folder, the gate, the trial budget, and optionally a start file:
    the process announces itself (<start>.<pid>) and waits for it, so two processes start at once.
    """
    import os
    import resource
    import sys
    import time
    from pathlib import Path

    import nasflow
    from nasflow.evaluator import FunctionalEvaluator
    from nasflow.experiment import NasExperiment, NasExperimentConfig
    from nasflow.nn import ModelSpace, MutableLinear
    from nasflow.strategy import Random


    class OwnedSpace(ModelSpace):
        def __init__(self):
            super().__init__()
            self.fc = MutableLinear(2, nasflow.choice("width", list(range(1, 13))))

        def forward(self, x):
            return self.fc(x)


    def fill_the_disk(db):
        """Leave the store a little room, as a nearly full disk would (RLIMIT_FSIZE: this process only)."""
        used = max(os.path.getsize(p) for p in (db, f"{db}-wal") if os.path.exists(p))
        resource.setrlimit(resource.RLIMIT_FSIZE, (used + 256 * 1024, resource.RLIM_INFINITY))


    def evaluate(model, gate, db):
        width = model.fc.out_features
        if os.path.exists(gate):
            Path(f"{gate}.{os.getpid()}").touch()  # training, in this process
        deadline = time.monotonic() + 600  # the test removes the gate (or kills this process) long before
        while os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)
        nasflow.report_intermediate_result(width / 20)
        final = {"default": width / 10}
        if os.environ.get("OWNED_FILL_DISK"):
            fill_the_disk(db)
            final.update({f"m{i}": float(i) for i in range(200_000)})  # megabytes: more than the room left
        nasflow.report_final_result(final)


    if __name__ == "__main__":
        mode, workdir, gate, trials = sys.argv[1:5]
        if sys.argv[5:]:
            start = Path(sys.argv[5])
            Path(f"{start}.{os.getpid()}").touch()
            while not start.exists():
                time.sleep(0.005)
        if mode == "resume":
            NasExperiment.resume("owned", experiment_working_directory=workdir)
        else:
            config = NasExperimentConfig("sequential", "simplified", max_trial_number=int(trials),
                                         experiment_working_directory=workdir, progress=False)
            evaluator = FunctionalEvaluator(evaluate, gate=gate, db=str(Path(workdir) / "owned" / "nasflow.db"))
            NasExperiment(OwnedSpace(), evaluator, Random(seed=3), config, id="owned").run()
''')
OWNED_TRIALS = 4


class Owned:
    """The OWNED script's files under ``tmp_path``, and the processes it runs."""

    def __init__(self, tmp_path: Path) -> None:
        self.script, self.workdir = tmp_path / "owned.py", tmp_path / "exps"
        self.gate, self.start = tmp_path / "gate", tmp_path / "start"
        self.script.write_text(OWNED)
        self.processes: list[subprocess.Popen[str]] = []

    @property
    def dir(self) -> Path:
        return self.workdir / "owned"

    def launch(self, mode: str, *, at_once: bool = False, **env: str) -> subprocess.Popen[str]:
        args = [mode, self.workdir, self.gate, OWNED_TRIALS, *([self.start] if at_once else [])]
        process = subprocess.Popen([sys.executable, str(self.script), *map(str, args)], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, env={**os.environ, **env})
        self.processes.append(process)
        return process

    def run(self, mode: str = "run", **env: str) -> tuple[int, str]:
        process = self.launch(mode, **env)
        output = process.communicate(timeout=HANG_GUARD_S)[0]
        return process.returncode, output

    def race(self, mode: str) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
        """Start two processes at once; returns (winner, loser) once the loser has exited."""
        pair = [self.launch(mode, at_once=True) for _ in range(2)]
        wait_until(lambda: all(Path(f"{self.start}.{p.pid}").exists() for p in pair), "both processes to be ready")
        self.start.touch()
        loser = wait_until(lambda: next((p for p in pair if p.poll() is not None), None), "one process to be refused")
        return pair[1 - pair.index(loser)], loser

    def training_in(self, process: subprocess.Popen[str]) -> None:
        wait_while_running(process, Path(f"{self.gate}.{process.pid}").exists, f"process {process.pid} to train")

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def owned(tmp_path: Path) -> Iterator[Owned]:
    files = Owned(tmp_path)
    try:
        yield files
    finally:
        files.kill_all()


def refused_for(loser: subprocess.Popen[str], winner: subprocess.Popen[str]) -> str:
    """The loser's output, which must name the winner as the experiment's running owner."""
    output = " ".join(loser.communicate()[0].split())
    assert loser.returncode != 0, output
    assert f"Experiment 'owned' is running in process {winner.pid}" in output, output
    assert "`nasflow resume owned` then continues it), or choose another experiment id" in output, output
    return output


def assert_complete(store_dir: Path, trials: int = OWNED_TRIALS) -> list[ModelRecord]:
    """Done, every model trained with its own metrics (a re-run model reports its intermediates again),
    the database whole, nothing half-made left in the folder."""
    records = snapshot(store_dir)
    assert [r.status for r in records] == ["trained"] * trials, [(r.status, r.error) for r in records]
    assert len({r.sample["width"] for r in records}) == trials
    for record in records:
        width = record.sample["width"]
        assert set(record.metrics.intermediates) == {width / 20} and record.metrics.final["default"] == width / 10
    with ExperimentStore.open(store_dir, read_only=True) as store:
        assert store.experiment().status == "done"
    with sqlite3.connect(f"{(store_dir / 'nasflow.db').as_uri()}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert [name for name in os.listdir(store_dir) if ".creating" in name] == []
    return records


def test_one_id_started_twice_at_once_one_runs_and_the_other_is_refused_deleting_nothing(owned: Owned) -> None:
    owned.gate.touch()
    winner, loser = owned.race("run")
    refused_for(loser, winner)
    owned.training_in(winner)  # the winner holds its first model at the gate, its store intact
    owned.gate.unlink()
    output = winner.communicate(timeout=HANG_GUARD_S)[0]
    assert winner.returncode == 0, output
    assert all(len(r.metrics.intermediates) == 1 for r in assert_complete(owned.dir))


def test_two_resumes_at_once_one_runs_the_other_is_refused_naming_it(owned: Owned) -> None:
    owned.gate.touch()
    first = owned.launch("run")
    owned.training_in(first)
    first.kill()  # SIGKILL mid-training: a model left training, the status left running, a dead pid
    first.wait()

    winner, loser = owned.race("resume")
    refused_for(loser, winner)
    owned.training_in(winner)  # re-running the model the kill cut short
    cli = subprocess.run([sys.executable, "-m", "nasflow.cli", "resume", "owned", "--dir", str(owned.workdir)],
                         capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert cli.returncode == 2 and f"running in process {winner.pid}" in " ".join(cli.stdout.split()), cli
    with pytest.raises(StoreLockedError, match=f"running in process {winner.pid}"):
        NasExperiment.resume("owned", experiment_working_directory=str(owned.workdir))
    assert winner.poll() is None
    owned.gate.unlink()
    output = winner.communicate(timeout=HANG_GUARD_S)[0]
    assert winner.returncode == 0, output
    records = assert_complete(owned.dir)
    assert [r.model_id for r in records] == list(range(OWNED_TRIALS))
    assert all(len(r.metrics.intermediates) == 1 for r in records)  # each model ran to its end once


@pytest.mark.parametrize("point", ["store-temp-committed", "store-published"])
def test_a_creation_killed_midway_leaves_nothing_to_resume_or_a_whole_store(
    owned: Owned, point: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = owned.run(NASFLOW_TEST_KILL_AT=point)
    assert code == -signal.SIGKILL, output
    if point == "store-published":  # the store is whole, its setup included: resume runs the search
        NasExperiment.resume("owned", experiment_working_directory=str(owned.workdir))
        assert_complete(owned.dir)
        return
    assert main(["resume", "owned", "--dir", str(owned.workdir)]) == 2
    message = " ".join(capsys.readouterr().out.split())
    assert "Experiment 'owned' in" in message and "was never created completely" in message
    assert "there is nothing to resume" in message and "Run the search again: the same id works" in message
    code, output = owned.run()
    assert code == 0, output
    assert_complete(owned.dir)


def test_a_full_disk_names_the_store_records_the_failure_and_resume_finishes(owned: Owned) -> None:
    code, output = owned.run(OWNED_FILL_DISK="1")
    db = owned.dir / "nasflow.db"
    assert code == 1, output
    assert f"Cannot write experiment store {db}: " in output and "free space on the disk holding" in output, output
    with ExperimentStore.open(owned.dir, read_only=True) as store:
        assert store.experiment().status == "failed"  # not left 'running': the small writes still fitted
        [cut] = store.models()
    assert (cut.status, cut.error, cut.metrics.final) == ("interrupted", EXPERIMENT_FAILED, None)
    NasExperiment.resume("owned", experiment_working_directory=str(owned.workdir))
    assert_complete(owned.dir)
