"""Once ``report_final_result`` returns in a trial, the value survives ``kill -9`` of the experiment.

The experiment runs as a script in a subprocess; its one trial reports a random value (a re-run would
report another) and counts its runs in a file. On the local engine the test stops the experiment
process (SIGSTOP) before letting the trial report, so the report cannot be recorded by it, then
kills it once the trial says the report returned: the value is only in the trial's journal. On the
sequential engine the trial kills its own process right after the report returns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support import HANG_GUARD_S, reaped, wait_while_running

import nasflow
from nasflow.execution.training_service import _execute
from nasflow.experiment import ExperimentStore, NasExperiment
from nasflow.runtime import trial_context
from nasflow.runtime.journal import JOURNAL_NAME, TrialJournal, read_journal

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and the local service")

SCRIPT = textwrap.dedent('''
    import os
    import random
    import signal
    import sys
    import time
    from pathlib import Path

    import nasflow
    from nasflow.evaluator import FunctionalEvaluator
    from nasflow.experiment import NasExperiment, NasExperimentConfig
    from nasflow.nn import ModelSpace, MutableLinear
    from nasflow.strategy import GridSearch


    class One(ModelSpace):
        def __init__(self):
            super().__init__()
            self.fc = MutableLinear(2, nasflow.choice("width", [4]))

        def forward(self, x):
            return self.fc(x)


    def holder_alive():
        """The killed experiment's pid, while it exists (only set in the first run's processes)."""
        pid = int(os.environ.get("DURABLE_EXPERIMENT_PID", "0"))
        try:
            return pid > 0 and os.kill(pid, 0) is None
        except ProcessLookupError:
            return False


    def evaluate(model, marks):
        marks = Path(marks)
        with open(marks / "runs", "a") as f:
            f.write(f"{os.getpid()}\\n")
        first = holder_alive()
        if first and os.environ["DURABLE_ENGINE"] == "local":
            (marks / "ready").touch()
            while not (marks / "go").exists():  # the test stops the experiment process, then says go
                time.sleep(0.01)
        nasflow.report_intermediate_result(0.5)
        value = random.random()
        nasflow.report_final_result(value)
        (marks / "reported").write_text(repr(value))
        if first and os.environ["DURABLE_ENGINE"] == "sequential":
            os.kill(os.getpid(), signal.SIGKILL)
        while holder_alive():  # until the test has killed the experiment
            time.sleep(0.01)


    if __name__ == "__main__":
        engine, workdir, marks = sys.argv[1:4]
        os.environ["DURABLE_EXPERIMENT_PID"] = str(os.getpid())
        os.environ["DURABLE_ENGINE"] = engine
        if engine == "sequential":
            config = NasExperimentConfig("sequential", "simplified")
        else:
            config = NasExperimentConfig("ts", "simplified", "local")
        config.experiment_working_directory = workdir
        config.progress = False
        evaluator = FunctionalEvaluator(evaluate, marks=marks)
        NasExperiment(One(), evaluator, GridSearch(), config, id="durable").run()
''')


@pytest.mark.parametrize("engine", ["local", "sequential"])
def test_a_reported_final_result_survives_sigkill_and_is_not_run_again(tmp_path: Path, engine: str) -> None:
    script, workdir, marks = tmp_path / "search.py", tmp_path / "exps", tmp_path / "marks"
    script.write_text(SCRIPT)
    marks.mkdir()
    with reaped(subprocess.Popen([sys.executable, str(script), engine, str(workdir), str(marks)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)) as process:
        if engine == "local":
            wait_while_running(process, (marks / "ready").exists, "the trial to be ready")
            process.send_signal(signal.SIGSTOP)  # from here on the experiment records nothing
            (marks / "go").touch()
            wait_while_running(process, (marks / "reported").exists, "the trial's report")
            process.send_signal(signal.SIGKILL)
        output = process.communicate(timeout=HANG_GUARD_S)[0]
    assert process.returncode == -signal.SIGKILL, output
    reported = float((marks / "reported").read_text())

    store_dir = workdir / "durable"
    with ExperimentStore.open(store_dir, read_only=True) as store:
        (before,) = store.models(include_payload=False)
    assert before.status in ("frozen", "training")  # the killed process did not record the end
    if engine == "local":
        assert before.metrics.final is None  # nor the final result: only the trial's journal holds it

    NasExperiment.resume("durable", experiment_working_directory=str(workdir))
    with ExperimentStore.open(store_dir, read_only=True) as store:
        (after,) = store.models(include_payload=False)
        assert store.experiment().status == "done"
    assert after.status == "trained", (after.status, after.error)
    assert after.metrics.final == reported
    assert after.metrics.intermediates == [0.5]  # recorded once, whether the experiment had it or not
    assert len((marks / "runs").read_text().split()) == 1  # the model did not run again
    if engine == "local":
        assert after.trial_id is not None and after.log_path is not None and Path(after.log_path).exists()


def test_a_journal_is_json_lines_and_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    journal = TrialJournal(tmp_path / "trial-7-abc", model_id=7)
    journal.append("intermediate", {"default": 0.5, "n": 1})
    journal.append("final", 0.75)
    journal.close()
    path = tmp_path / "trial-7-abc" / JOURNAL_NAME
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["journal"] == 1 and lines[0]["model_id"] == 7
    assert lines[1:] == [{"kind": "intermediate", "value": {"default": 0.5, "n": 1}}, {"kind": "final", "value": 0.75}]
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    with open(path, "ab") as f:
        f.write(b'{"kind": "final", "val')  # a write cut short by a crash
    record = read_journal(path)
    assert record is not None and record.model_id == 7
    assert record.intermediates == [{"default": 0.5, "n": 1}] and record.final == 0.75 and record.error is None
    os.truncate(path, 0)
    assert read_journal(path) is None  # no header yet: nothing to ingest


class _Reporting:
    """Just what a trial's body needs of a model: an id and ``execute``."""

    model_id = 3

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def execute(self) -> None:
        nasflow.report_final_result(0.5)
        if self.fail:
            raise ValueError("the evaluator broke after reporting")


def test_the_journal_records_the_trials_own_failure_not_a_lost_experiment(tmp_path: Path) -> None:
    def experiment_gone(kind: str, value: Any) -> None:
        raise BrokenPipeError("the experiment process died")

    with trial_context(experiment_gone), pytest.raises(BrokenPipeError):
        _execute(_Reporting(fail=False), str(tmp_path / "trial-3-a"))
    gone = read_journal(tmp_path / "trial-3-a" / JOURNAL_NAME)
    assert gone is not None and gone.final == 0.5 and gone.error is None  # resume records it trained
    with trial_context(lambda kind, value: None), pytest.raises(ValueError):
        _execute(_Reporting(fail=True), str(tmp_path / "trial-3-b"))
    broke = read_journal(tmp_path / "trial-3-b" / JOURNAL_NAME)
    assert broke is not None and "the evaluator broke after reporting" in (broke.error or "")
