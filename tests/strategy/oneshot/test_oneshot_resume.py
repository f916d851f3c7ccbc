"""A one-shot search killed mid-way resumes from its last checkpoint: supernet, architecture, optimizers."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nasflow.experiment import NasExperiment
from nasflow.experiment.store import ExperimentStore

pytestmark = pytest.mark.filterwarnings("ignore")

HERE = Path(__file__).parent
STEPS_PER_EPOCH = 10  # 500 training images, batches of 50


def test_killed_search_resumes_where_its_checkpoint_left_off(tmp_path: Path) -> None:
    env = {**os.environ, "NASFLOW_TEST_KILL": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, str(HERE / "killed_search.py"), str(tmp_path), "killed"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    folder = tmp_path / "killed" / "strategy"
    checkpoint = torch.load(folder / "last.ckpt", weights_only=False)
    assert checkpoint["epoch"] == 1  # written at the end of the second epoch
    assert stat.S_IMODE(os.stat(folder / "last.ckpt").st_mode) == 0o600
    logits_then = checkpoint["state_dict"]["arch_logits.0"]
    with ExperimentStore.open(tmp_path / "killed", read_only=True) as store:
        (record,) = store.models()
        assert record.status == "training" and [m["epoch"] for m in record.metrics.intermediates] == [0, 1]

    experiment = NasExperiment.resume("killed", experiment_working_directory=str(tmp_path))  # here, in-process
    with ExperimentStore.open(tmp_path / "killed", read_only=True) as store:
        (record,) = store.models()
        assert store.experiment().status == "done"
    assert record.status == "trained" and record.model_id == 0
    assert [m["epoch"] for m in record.metrics.intermediates] == [0, 1, 2, 3]  # continued, not restarted
    final = torch.load(folder / "last.ckpt", weights_only=False)
    arch_optimizer = final["optimizer_states"][1]["state"][0]
    assert int(arch_optimizer["step"]) == 4 * STEPS_PER_EPOCH  # its Adam state came back from the checkpoint
    assert not torch.equal(final["state_dict"]["arch_logits.0"], logits_then)
    assert record.sample == experiment.export_top_models(1)[0] == experiment.strategy.export()
