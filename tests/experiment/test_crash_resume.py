"""Crash safety with real processes: SIGKILL an experiment mid-run, resume it, lose and repeat nothing.

The search runs as a script in a subprocess. Its evaluator appends ``begin <width> <pid>`` to a log
before training, so every run of every sample is on record, whichever process ran it. After the
kill the experiment is resumed in this process (its space and evaluator come out of the store: they
lived in the script's ``__main__``), and the store and the log are checked against each other.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support import HANG_GUARD_S, alive, descendants

from nasflow.experiment import ExperimentStore, NasExperiment
from nasflow.experiment.store import ModelRecord

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
    process = subprocess.Popen([sys.executable, str(script), engine, str(workdir), str(log), str(MAX_TRIALS)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while not mid_run(store_dir):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the experiment did not get going"
            time.sleep(0.02)
        children = descendants(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait(10)  # reaped: a zombie would look like a live experiment to resume
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL

    # The fork server and its workers die with the experiment process.
    deadline = time.monotonic() + HANG_GUARD_S
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in children if alive(pid)] == []

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
