"""A dict metric's extra entries: converted to plain JSON in the trial, or refused there, failing that
trial alone, on every engine; the store keeps the same definition as its last check."""

from __future__ import annotations

import json
import math
import sqlite3
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch
from support import WidthSpace
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import ExperimentStore, NasExperiment, NasExperimentConfig
from nasflow.experiment.store import _metric_text
from nasflow.runtime import normalize_metric
from nasflow.strategy import GridSearch

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # trial code travels as a user's script's would


def numpy_or_nan(model: nn.Module) -> None:
    """Width 1 reports numpy and tensor entries, width 2 a NaN entry, width 3 a plain metric."""
    width = model.fc.out_features
    if width == 1:
        nasflow.report_intermediate_result({"default": np.float32(0.25), "step": np.int64(1)})
        nasflow.report_final_result({"default": np.float64(0.5), "loss": np.float32(0.75), "epochs": np.int64(3),
                                     "per_class": np.array([1, 2]), "top": torch.tensor(0.125),
                                     "nested": {"ok": np.bool_(True), "pair": (np.int32(4), None)}})
    elif width == 2:
        nasflow.report_final_result({"default": 0.9, "val_loss": float("nan")})
    else:
        nasflow.report_final_result(0.3)


def test_one_definition_converts_entries_and_names_what_it_refuses() -> None:
    value = normalize_metric({"default": np.float32(0.5), "n": np.int64(2), "xs": [np.float16(1.0), {"k": (1, 2)}]})
    assert value == {"default": 0.5, "n": 2, "xs": [1.0, {"k": [1, 2]}]}
    assert type(value["n"]) is int and type(value["xs"][0]) is float
    assert json.loads(_metric_text(value, "m")) == value
    for bad, key, error in [({"default": 1.0, "a": {"b": [0.0, math.inf]}}, "metric['a']['b'][1]", ValueError),
                            ({"default": 1.0, "f": print}, "metric['f']", TypeError),
                            ({"default": 1.0, "d": {1: 2}}, "metric['d']", TypeError),
                            ({"default": math.nan}, "metric['default']", ValueError)]:
        with pytest.raises(error) as trial_side:
            normalize_metric(bad)
        assert key in str(trial_side.value)
        with pytest.raises(error) as store_side:  # the store refuses exactly what the trial refuses
            _metric_text(bad, "Final metric of model 7")
        assert key in str(store_side.value) and "model 7" in str(store_side.value)


@pytest.mark.parametrize("engine", ["sequential", "local"])
def test_numpy_entries_are_stored_as_numbers_and_a_nan_entry_fails_only_its_trial(tmp_path: Path,
                                                                                    engine: str) -> None:
    if engine == "sequential":
        config = NasExperimentConfig("sequential", "simplified")
    else:
        config = NasExperimentConfig("ts", "simplified", "local", trial_concurrency=2)
    config.experiment_working_directory, config.progress = str(tmp_path), False
    exp = NasExperiment(WidthSpace(), FunctionalEvaluator(numpy_or_nan), GridSearch(), config)
    assert exp.run() is True
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        assert store.experiment().status == "done"
        by_width = {r.sample["width"]: r for r in store.models(include_payload=False)}
    numpy_model, nan_model, plain_model = by_width[1], by_width[2], by_width[3]
    assert numpy_model.status == "trained", numpy_model.error
    assert numpy_model.metrics.final == {"default": 0.5, "loss": 0.75, "epochs": 3, "per_class": [1, 2],
                                         "top": 0.125, "nested": {"ok": True, "pair": [4, None]}}
    assert numpy_model.metrics.intermediates == [{"default": 0.25, "step": 1}]
    assert nan_model.status == "failed" and nan_model.metrics.final is None
    assert "metric['val_loss'] is nan" in (nan_model.error or ""), nan_model.error
    assert plain_model.status == "trained" and plain_model.metrics.final == 0.3
    # Stored as JSON numbers, not strings or pickles.
    with sqlite3.connect(tmp_path / exp.id / "nasflow.db") as conn:
        (text,) = conn.execute("SELECT final FROM model WHERE model_id = ?", (numpy_model.model_id,)).fetchone()
    assert json.loads(text)["epochs"] == 3 and '"epochs":3' in text
    assert exp.export_top_models(1) == [{"width": 1}]


def test_sequential_resume_after_a_bad_metric_finishes(tmp_path: Path) -> None:
    """The model whose metric was refused ends failed (not left training), so a resume has nothing to redo."""
    config = NasExperimentConfig("sequential", "simplified", experiment_working_directory=str(tmp_path),
                                 progress=False)
    exp = NasExperiment(WidthSpace(), FunctionalEvaluator(numpy_or_nan), GridSearch(), config)
    exp.run()
    resumed = NasExperiment.resume(exp.id, experiment_working_directory=str(tmp_path))
    statuses = sorted((m.sample["width"], m.status.value) for m in resumed.list_models())
    assert statuses == [(1, "trained"), (2, "failed"), (3, "trained")]
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        assert store.experiment().status == "done"
