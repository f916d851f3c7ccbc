"""What trials leave on disk is private whatever the umask: folders 0700, files 0600 (logs, and
whatever a trial writes into its folder: checkpoints, Lightning logs)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import NasExperiment, NasExperimentConfig
from nasflow.nn import ModelSpace, MutableLinear
from nasflow.runtime import current_trial
from nasflow.strategy import Random


class Tiny(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.fc = MutableLinear(2, nasflow.choice("width", [1, 2]))


def writes_a_checkpoint(model: object) -> None:
    context = current_trial()
    assert context is not None and context.trial_dir is not None
    folder = Path(context.trial_dir) / "checkpoints"
    folder.mkdir(parents=True)  # default modes: what the umask leaves
    (folder / "last.ckpt").write_text("weights")
    print("trained", flush=True)
    nasflow.report_final_result(1.0)


@pytest.fixture
def open_umask() -> Iterator[None]:
    before = os.umask(0)
    try:
        yield
    finally:
        os.umask(before)


def test_trial_folders_and_files_are_private_under_an_open_umask(tmp_path: Path, open_umask: None) -> None:
    config = NasExperimentConfig("ts", "simplified", max_trial_number=2, experiment_working_directory=str(tmp_path),
                                 progress=False)
    NasExperiment(Tiny(), FunctionalEvaluator(writes_a_checkpoint), Random(seed=0), config, id="modes").run()
    trials = tmp_path / "modes" / "trials"
    found = [trials, *trials.rglob("*")]
    assert sum(p.name == "last.ckpt" for p in found) == 2 and sum(p.suffix == ".log" for p in found) == 2
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in found}
    assert modes == {name: 0o700 if (tmp_path / name).is_dir() else 0o600 for name in modes}
