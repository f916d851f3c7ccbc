"""CGO through NasExperiment: real workers, graph format, the SQLite store.

Merged trials give each model the metrics it gets alone, search digits as well as solo trials do,
fall back to solo runs when a merged trial fails, and survive a stop and resume.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cgo_support import DigitsNet, TinyNet, digits_evaluator, tiny_data, tiny_evaluator

from nasflow.execution import ModelEvent, ModelEventType
from nasflow.experiment import ExperimentStore, NasExperiment, NasExperimentConfig
from nasflow.experiment.store import ModelRecord
from nasflow.space import ExecutableModelSpace, ModelStatus
from nasflow.strategy import GridSearch

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the local service targets Linux"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers", "ignore:.*treespec"),
]


def config(tmp_path: Path, engine: str = "cgo", max_concurrency_cgo: int | None = None,
           **kwargs: Any) -> NasExperimentConfig:
    """One thread per trial; workers are reused, so Lightning is imported once per worker, not per trial."""
    cfg = NasExperimentConfig(engine, "graph", "local", experiment_working_directory=str(tmp_path), progress=False,
                              threads_per_trial=1, reuse_mode=True, **kwargs)
    if engine == "cgo":
        cfg.max_concurrency_cgo = max_concurrency_cgo
        cfg.batch_waiting_time = 5
    return cfg


def records(tmp_path: Path, experiment_id: str) -> list[ModelRecord]:
    with ExperimentStore.open(tmp_path / experiment_id, read_only=True) as store:
        return store.models(include_payload=False)


def by_sample(rows: list[ModelRecord]) -> dict[tuple[Any, ...], ModelRecord]:
    return {tuple(sorted(r.sample.items())): r for r in rows}


def test_digits_with_and_without_cgo_give_the_same_metrics(tmp_path: Path) -> None:
    """Four deterministic models (seeded init, unshuffled data, no dropout), trained merged in one
    trial and as four solo trials: per-model metrics are the same numbers, every epoch, and the
    best passes 90%."""
    results = {}
    for engine, concurrency in (("cgo", 1), ("ts", 2)):
        cfg = config(tmp_path, engine, max_concurrency_cgo=4, max_trial_number=4, trial_concurrency=concurrency)
        exp = NasExperiment(DigitsNet(), digits_evaluator(max_epochs=4), GridSearch(shuffle=False), cfg)
        assert exp.run() is True
        rows = records(tmp_path, exp.id)
        assert len(rows) == 4 and all(r.status == ModelStatus.Trained.value for r in rows)
        best = max(r.metrics.final["val_acc"] for r in rows)  # type: ignore[index]
        assert best > 0.9, f"{engine}: best validation accuracy {best}"
        results[engine] = rows
    assert len({r.trial_id for r in results["cgo"]}) == 1  # the four trained as one merged trial
    assert len({r.trial_id for r in results["ts"]}) == 4
    merged, solo = by_sample(results["cgo"]), by_sample(results["ts"])
    assert merged.keys() == solo.keys()
    for sample, row in merged.items():
        assert row.metrics.final == solo[sample].metrics.final, sample
        assert row.metrics.intermediates == solo[sample].metrics.intermediates and len(row.metrics.intermediates) == 4


def test_failed_merged_trial_reruns_each_model_alone(tmp_path: Path) -> None:
    """One of three merged models breaks the head's input shape: the merged trial fails, the others
    train alone and end Trained, the broken one fails alone with its error in the store."""
    cfg = config(tmp_path, max_concurrency_cgo=3, max_trial_number=3)
    exp = NasExperiment(TinyNet(), tiny_evaluator(tiny_data()), GridSearch(shuffle=False), cfg)
    exp.run()
    rows = {r.sample["mid"]: r for r in records(tmp_path, exp.id)}
    assert {mid: r.status for mid, r in rows.items()} == {0: "trained", 1: "trained", 2: "failed"}
    assert "mat1 and mat2 shapes cannot be multiplied" in (rows[2].error or "")
    assert rows[0].error is None and rows[1].error is None
    for row in rows.values():  # trained twice: merged, then alone
        assert [h.status for h in row.history].count("training") >= 2, row.history
    assert len({r.trial_id for r in rows.values()}) == 3  # the re-runs are solo trials
    assert all(isinstance(rows[mid].metrics.final, dict) for mid in (0, 1))


def test_stopped_cgo_experiment_resumes_to_completion(tmp_path: Path) -> None:
    """Stop when the first merged trial's models have ended; resume trains the rest, merged again."""
    cfg = config(tmp_path, max_concurrency_cgo=2, max_trial_number=4, trial_concurrency=1)
    exp = NasExperiment(DigitsNet(), digits_evaluator(max_epochs=12), GridSearch(shuffle=False), cfg)
    ended: list[ExecutableModelSpace] = []

    def stop_after_the_first_pair(event: ModelEvent) -> None:
        """Called as the experiment handles each end, before it starts the next trial (one at a time)."""
        ended.append(event.model)
        if len(ended) == 2:
            exp.stop()

    exp.run(wait_completion=False)  # a merged trial takes seconds to start: the callback is in place before
    exp._recorder.register_model_event_callback(ModelEventType.TrainingEnd, stop_after_the_first_pair)
    exp.wait_completion()
    before = records(tmp_path, exp.id)
    assert sum(r.status == "trained" for r in before) == 2  # stopped mid-run: two of four done

    resumed = NasExperiment.resume(exp.id, experiment_working_directory=str(tmp_path))
    after = records(tmp_path, resumed.id)
    assert len(after) == 4 and all(r.status == "trained" for r in after), [(r.model_id, r.status) for r in after]
    kept = {r.model_id: r.trial_id for r in before if r.status == "trained"}
    assert all(r.trial_id == kept[r.model_id] for r in after if r.model_id in kept)  # finished ones not re-run
    assert set(Counter(r.trial_id for r in after).values()) == {2}  # merged in pairs, before and after
    assert max(r.metrics.final["val_acc"] for r in after) > 0.9  # type: ignore[index]
