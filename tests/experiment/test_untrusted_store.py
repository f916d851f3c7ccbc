"""Reading a store never unpickles: a store whose setup, strategy state and model payloads are
hostile pickles is listed, shown, exported and viewed without running them."""

from __future__ import annotations

import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from support import WidthSpace
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import NasExperiment, NasExperimentConfig, UntrustedStoreError
from nasflow.space import ModelStatus
from nasflow.strategy import Random


def by_width(model: nn.Module) -> None:
    nasflow.report_final_result(model.fc.out_features / 10)


class Hostile:
    """Unpickling it runs code: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def poison(db: Path, marker: Path) -> None:
    """Every pickle of the store replaced by a hostile one, written with plain SQL."""
    blob = pickle.dumps(Hostile(marker))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'setup'", (f'"{blob.hex()}"',))
        assert conn.execute("UPDATE strategy_state SET state = ?", (blob,)).rowcount == 1
        assert conn.execute("UPDATE strategy_log SET entry = ?", (blob,)).rowcount > 0  # Random's samples seen
        assert conn.execute("UPDATE model SET payload = ?", (blob,)).rowcount == 3
    conn.close()


def nasflow_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nasflow.cli", *args], capture_output=True, text=True, timeout=300)


def test_list_show_export_and_view_never_unpickle(tmp_path: Path) -> None:
    config = NasExperimentConfig("sequential", "simplified", max_trial_number=3,
                                 experiment_working_directory=str(tmp_path), progress=False)
    experiment = NasExperiment(WidthSpace(), FunctionalEvaluator(by_width), Random(seed=0), config, id="hostile")
    experiment.run()
    best = experiment.export_top_models(1)
    experiment._require_store().close()
    marker = tmp_path / "marker"
    poison(tmp_path / "hostile" / "nasflow.db", marker)

    listed = nasflow_cli("list", "--dir", str(tmp_path))
    assert listed.returncode == 0 and "hostile" in listed.stdout, listed.stderr
    shown = nasflow_cli("show", "hostile", "--dir", str(tmp_path))
    assert shown.returncode == 0 and "Random strategy, simplified format" in shown.stdout, shown.stderr
    exported = nasflow_cli("export", "hostile", "--dir", str(tmp_path))
    assert exported.returncode == 0 and exported.stdout.strip().startswith("["), exported.stderr
    assert f'"width": {best[0]["width"]}' in exported.stdout
    assert not marker.exists()

    view = NasExperiment.view("hostile", experiment_working_directory=str(tmp_path))
    assert view.export_top_models(1) == best
    models = view.list_models()
    assert [m.status for m in models] == [ModelStatus.Trained] * 3 and all(m.metric is not None for m in models)
    assert view.description is not None and view.description["strategy"] == "Random"
    assert view.config is not None and view.config.max_trial_number == 3
    with pytest.raises(UntrustedStoreError, match="trusted=True"):
        view.export_top_models(1, formatter="instance")
    with pytest.raises(UntrustedStoreError, match="trusted=True"):
        models[0].executable_model()
    assert not marker.exists()
    view._require_store().close()

    # the pickles are live: trusting the store runs them (what resume and trusted=True are for)
    trusted = NasExperiment.view("hostile", experiment_working_directory=str(tmp_path), trusted=True)
    with pytest.raises(TypeError):
        trusted.export_top_models(1, formatter="instance")
    assert marker.exists()
    trusted._require_store().close()
