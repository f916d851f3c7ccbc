"""Failures are visible: each failed trial says why as it fails, a run ends with a summary,
``nasflow run`` exits non-zero when no trial succeeded, and ``nasflow stop`` / ``nasflow logs``
work on real experiments, all through the real command in subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from support import reaped, wait_while_running

from nasflow.experiment import ExperimentStore

SCRIPT = textwrap.dedent('''
    import os, sys, time

    import nasflow
    from nasflow.evaluator import FunctionalEvaluator
    from nasflow.experiment import NasExperiment, NasExperimentConfig
    from nasflow.nn import ModelSpace, MutableLinear
    from nasflow.strategy import Random


    class Space(ModelSpace):
        def __init__(self):
            super().__init__()
            self.fc = MutableLinear(2, nasflow.choice("width", [1, 2, 3, 4]))

        def forward(self, x):
            return self.fc(x)


    def evaluate(model, mode, flags):
        print("training width", model.fc.out_features, flush=True)
        if mode == "fail":
            raise ValueError("the data loader found no images")
        open(os.path.join(flags, "started"), "w").close()  # the test's barrier
        while not os.path.exists(os.path.join(flags, "release")):
            time.sleep(0.05)
        nasflow.report_final_result(model.fc.out_features / 10)


    if __name__ == "__main__":
        workdir, mode, flags, trials = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
        config = NasExperimentConfig("ts", "simplified", max_trial_number=trials, experiment_working_directory=workdir)
        NasExperiment(Space(), FunctionalEvaluator(evaluate, mode=mode, flags=flags), Random(seed=0), config,
                      id=mode).run()
''')


def nasflow(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nasflow.cli", *args], capture_output=True, text=True,
                          timeout=300, **kwargs)  # type: ignore[call-overload]


def script(tmp_path: Path) -> Path:
    path = tmp_path / "search.py"
    path.write_text(SCRIPT)
    return path


def test_a_run_where_every_trial_fails_says_why_and_exits_non_zero(tmp_path: Path) -> None:
    work = tmp_path / "exps"
    result = nasflow("run", str(script(tmp_path)), str(work), "fail", str(tmp_path), "3")  # stderr: a pipe
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    failures = [line for line in lines if line.startswith("model ") and " failed: " in line]
    assert len(failures) == 3, result.stderr
    assert all("ValueError: the data loader found no images (log: " in line and str(work / "fail" / "trials") in line
               for line in failures)
    assert "Experiment fail done: 0 trained, 3 failed, 0 interrupted, of 3 models." in result.stderr
    assert "No trial succeeded; most common failure (3 of 3): ValueError: the data loader found no images" \
        in result.stderr
    assert "no trial succeeded in experiment(s) fail" in result.stderr

    logs = nasflow("logs", "fail", "1", "--dir", str(work))
    assert logs.returncode == 0 and "training width" in logs.stdout
    assert "ValueError: the data loader found no images" in logs.stdout
    missing = nasflow("logs", "fail", "7", "--dir", str(work))
    assert missing.returncode == 1 and "has no model 7" in missing.stderr and "nasflow show fail" in missing.stderr


def test_stop_interrupts_a_running_experiment_resumably(tmp_path: Path) -> None:
    work = tmp_path / "exps"
    # Started as `nohup nasflow run ... &` starts it: ignoring SIGINT, which `nasflow stop` must not rely on.
    with reaped(subprocess.Popen([sys.executable, "-m", "nasflow.cli", "run", str(script(tmp_path)), str(work),
                                  "block", str(tmp_path), "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))) as proc:
        # Until the trial reaches the barrier; a run that ends first fails the test with its output.
        wait_while_running(proc, (tmp_path / "started").exists, "the trial to start")
        stop = nasflow("stop", "block", "--dir", str(work))
        assert stop.returncode == 0, stop.stderr
        assert f"pid {proc.pid}" in stop.stdout and "is stopped" in stop.stdout
        _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr  # stopped by the user: not a failure
    assert "Experiment block stopped: 0 trained, 0 failed, 1 interrupted, of 1 models." in stderr
    assert "nasflow resume block" in stderr and " failed: " not in stderr
    with ExperimentStore.open(work / "block", read_only=True) as store:
        assert [r.status for r in store.models()] == ["interrupted"]
    again = nasflow("stop", "block", "--dir", str(work))
    assert again.returncode == 1 and "not running (status stopped)" in again.stderr

    (tmp_path / "release").touch()
    resumed = nasflow("resume", "block", "--dir", str(work))
    assert resumed.returncode == 0, resumed.stderr
    assert "1 trained, 0 failed, 0 interrupted" in resumed.stderr and "Best: model 0" in resumed.stderr


def test_stop_of_an_unknown_or_dead_experiment_is_a_clear_refusal(tmp_path: Path) -> None:
    work = tmp_path / "exps"
    with ExperimentStore.create(work / "gone", "gone", "gone", {}) as store:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
        store.set_experiment_status("running", int(dead.stdout))  # a process that no longer exists
    result = nasflow("stop", "gone", "--dir", str(work))
    assert result.returncode == 1 and "is gone" in result.stderr and "nasflow resume gone" in result.stderr
    unknown = nasflow("stop", "nope", "--dir", str(work))
    assert unknown.returncode != 0 and "No experiment 'nope'" in unknown.stdout + unknown.stderr
    assert os.listdir(work) == ["gone"]
