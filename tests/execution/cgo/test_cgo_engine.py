"""CrossGraphOptimization over the real local training service, driven directly (no experiment).

Real worker processes: merged trials produce each batch once, groups respect
``max_concurrency_cgo``, ``batch_waiting_time`` and data boundaries, evaluators without a data
signature run alone, same-architecture models train batched, and a trial's files stay in its folder.
No assertion depends on how fast the machine is: timings are only compared with lower bounds.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cgo_support import (
    CountingDataset,
    DigitsNet,
    TinyNet,
    count,
    digits_evaluator,
    score_by_size,
    tiny_data,
    tiny_evaluator,
)

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.execution import TrainingServiceExecutionEngine
from nasflow.execution.cgo import CrossGraphOptimization, MergedTrial, middleware
from nasflow.execution.event import ModelEventType, TrainingEndEvent, TrainingStartEvent
from nasflow.space import ExecutableModelSpace, ModelStatus
from nasflow.space.graph import GraphModelSpace
from nasflow.training_service import LocalTrainingService

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the local service targets Linux"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers", "ignore:.*treespec"),
]


class Run:
    """A CGO engine over one local worker, recording every trial launch and start."""

    def __init__(self, service: LocalTrainingService, log_dir: Path | None = None, **cgo: Any) -> None:
        self.inner = TrainingServiceExecutionEngine(service, trial_concurrency=1, log_dir=log_dir)
        self.cgo = CrossGraphOptimization(self.inner, **cgo)
        self.launches: list[tuple[float, list[int], bool]] = []  # (seconds since t0, model ids, during submit)
        self.plans: list[list[list[int]]] = []  # batch groups (model ids) of each merged trial
        self.trial_of: dict[int, str] = {}
        self.ended_at: dict[int, float] = {}  # model id -> seconds since t0
        self.submitting = False
        self.t0 = time.monotonic()
        submit = self.inner.submit_models

        def recording_submit(*models: ExecutableModelSpace) -> None:
            for model in models:
                ids = [m.model_id for m in getattr(model, "models", [model])]
                self.launches.append((time.monotonic() - self.t0, ids, self.submitting))
                if isinstance(model, MergedTrial):
                    self.plans.append([[model.models[i].model_id for i in g] for g in model.batch_groups])
            submit(*models)

        self.inner.submit_models = recording_submit  # type: ignore[method-assign]
        self.cgo.register_model_event_callback(ModelEventType.TrainingStart, self._started)
        self.cgo.register_model_event_callback(ModelEventType.TrainingEnd, self._ended)

    def _started(self, event: TrainingStartEvent) -> None:
        self.trial_of[event.model.model_id] = (event.info or {})["trial_id"]

    def _ended(self, event: TrainingEndEvent) -> None:
        self.ended_at[event.model.model_id] = time.monotonic() - self.t0

    def submit(self, models: list[ExecutableModelSpace]) -> None:
        self.t0 = time.monotonic()
        self.submitting = True
        try:
            self.cgo.submit_models(*models)
        finally:
            self.submitting = False

    def run(self, models: list[ExecutableModelSpace], timeout: float = 300.0) -> None:
        self.submit(models)
        self.cgo.wait_models(*models, wait_all=True, timeout=timeout)
        assert all(m.status.completed() for m in models), [m.status for m in models]

    def models_per_trial(self) -> Counter[str]:
        return Counter(self.trial_of.values())


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTrainingService]:
    """One worker pool for the module; Lightning is preloaded, so a trial starts in a fraction of a second."""
    service = LocalTrainingService(trial_concurrency=1, threads_per_trial=1, log_dir=tmp_path_factory.mktemp("logs"),
                                   preload=("torch", "lightning", "nasflow", "nasflow.evaluator"))
    service.start()
    yield service
    service.shutdown()


@pytest.fixture
def runs(service: LocalTrainingService) -> Iterator[list[Run]]:
    """Engines made by a test; whatever they left running is cancelled (the service lives on)."""
    made: list[Run] = []
    yield made
    for run in made:
        running = [m for m in run.cgo.list_models() if not m.status.completed()]
        if running:
            run.cgo.cancel_models(*running)
            run.cgo.wait_models(timeout=30)


def frozen(space: GraphModelSpace, *choices: int) -> list[ExecutableModelSpace]:
    return [space.freeze({"mid": choice}) for choice in choices]


def test_merged_trial_produces_each_batch_once(tmp_path: Path, service: LocalTrainingService,
                                               runs: list[Run]) -> None:
    """Three models in one trial read the data as one model would: one pass per epoch, not three."""
    train_counter, val_counter = str(tmp_path / "train.count"), str(tmp_path / "val.count")
    evaluator = tiny_evaluator(CountingDataset(train_counter, 64, "train"), CountingDataset(val_counter, 32, "val"),
                               max_epochs=2)
    space = GraphModelSpace.from_model(TinyNet(), evaluator)
    run = Run(service, max_concurrency_cgo=3, batch_waiting_time=30)
    runs.append(run)
    models = frozen(space, 0, 1, 0)
    run.run(models)
    assert [m.status for m in models] == [ModelStatus.Trained] * 3
    assert len(run.models_per_trial()) == 1, run.trial_of  # one merged trial
    assert count(train_counter) == 64 * 2  # one pass per epoch for all three models
    assert count(val_counter) == 32 * 2  # one validation per epoch (no sanity check)
    finals = [m.metrics.reported_final for m in models]  # as reported (Metrics.final keeps the number, as NNI)
    assert finals[0] != finals[1]  # each model got its own metric back
    assert all(isinstance(f, dict) and 0 <= f["val_acc"] <= 1 for f in finals)


def test_groups_respect_max_concurrency_and_waiting_time(service: LocalTrainingService, runs: list[Run]) -> None:
    """Five models, groups of at most two: two full groups start at submission, the last one waits."""
    space = GraphModelSpace.from_model(TinyNet(), tiny_evaluator(tiny_data()))
    waiting = 2.0
    run = Run(service, max_concurrency_cgo=2, batch_waiting_time=waiting)
    runs.append(run)
    models = frozen(space, 0, 1, 0, 1, 0)
    run.run(models)
    assert all(m.status == ModelStatus.Trained for m in models)
    assert max(run.models_per_trial().values()) == 2  # merged, but never more than two per trial
    assert [(len(ids), during_submit) for _, ids, during_submit in run.launches] == [(2, True), (2, True), (1, False)]
    assert run.launches[2][0] >= waiting  # the partial group waited for company


def test_partial_group_waits_without_busy_looping(service: LocalTrainingService, runs: list[Run],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiting for a partial group with nothing running sleeps rather than spinning a core."""
    space = GraphModelSpace.from_model(TinyNet(), tiny_evaluator(tiny_data()))
    run = Run(service, max_concurrency_cgo=3, batch_waiting_time=1.5)
    runs.append(run)
    models = frozen(space, 0, 1)
    sleeps: list[float] = []

    class Clock:  # the middleware's view of the time module: its naps are counted
        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            time.sleep(seconds)

    monkeypatch.setattr(middleware, "time", Clock)
    run.submit(models)
    run.cgo.wait_models(timeout=1.0)
    waited = time.monotonic() - run.t0
    monkeypatch.undo()
    assert all(at >= 1.5 for at, _, _ in run.launches)  # still waiting for a third model until then
    assert 1 <= len(sleeps) <= waited / 0.05 + 1 and min(sleeps) >= 0.05  # naps, never a spin
    run.cgo.wait_models(*models, wait_all=True, timeout=300)
    assert [len(ids) for _, ids, _ in run.launches] == [2]
    assert run.launches[0][0] >= 1.5
    assert len(run.models_per_trial()) == 1


def test_partial_group_launches_at_once_when_the_budget_is_spent(service: LocalTrainingService,
                                                                  runs: list[Run]) -> None:
    """With ``max_model_count`` reached no model can join the last group: it does not wait."""
    space = GraphModelSpace.from_model(TinyNet(), tiny_evaluator(tiny_data()))
    run = Run(service, max_concurrency_cgo=2, batch_waiting_time=600, max_model_count=3)
    runs.append(run)
    models = frozen(space, 0, 1, 0)
    run.run(models)
    assert not run.cgo.budget_available()
    assert [(len(ids), during_submit) for _, ids, during_submit in run.launches] == [(2, True), (1, True)]
    assert all(m.status == ModelStatus.Trained for m in models)


def test_models_with_different_data_never_merge(service: LocalTrainingService, runs: list[Run]) -> None:
    """Two evaluators on different data sets: models merge only with models reading the same data."""
    space_a = GraphModelSpace.from_model(TinyNet(), tiny_evaluator(tiny_data(seed=0)))
    space_b = GraphModelSpace.from_model(TinyNet(), tiny_evaluator(tiny_data(seed=1)))
    run = Run(service, max_concurrency_cgo=4, batch_waiting_time=0.5)
    runs.append(run)
    a, b = frozen(space_a, 0, 1), frozen(space_b, 0, 1)
    run.run([a[0], b[0], a[1], b[1]])
    trials_a = {run.trial_of[m.model_id] for m in a}
    trials_b = {run.trial_of[m.model_id] for m in b}
    assert len(trials_a) == 1 and len(trials_b) == 1  # each data set's models merged together...
    assert not trials_a & trials_b  # ...and never with the other's
    assert all(m.status == ModelStatus.Trained for m in a + b)


def test_evaluator_without_data_signature_runs_alone(service: LocalTrainingService, runs: list[Run]) -> None:
    space = GraphModelSpace.from_model(TinyNet(), FunctionalEvaluator(score_by_size))
    run = Run(service, max_concurrency_cgo=3, batch_waiting_time=30)
    runs.append(run)
    models = frozen(space, 0, 2)
    run.run(models)
    assert [(len(ids), during_submit) for _, ids, during_submit in run.launches] == [(1, True), (1, True)]
    assert [m.metrics.final for m in models] == [16 * 8 + 16 + 16 * 3 + 3, 16 * 8 + 16 + 16 * 5 + 5 + 16 * 3 + 3]
    assert len(run.models_per_trial()) == 2


def test_same_architecture_models_train_batched_and_match_solo_runs(tmp_path: Path, service: LocalTrainingService,
                                                                     runs: list[Run]) -> None:
    """One architecture under three learning rates, plus another architecture: one merged trial in
    which the three train as one batched module, named after its models, with its files and
    Lightning's messages in its own folder and log; every metric matches the model's solo run."""
    evaluator = digits_evaluator(max_epochs=1, learning_rate=nasflow.choice("lr", [0.01, 0.05, 0.002]), logger=True,
                                 enable_checkpointing=True, limit_train_batches=6)
    space = GraphModelSpace.from_model(DigitsNet(), evaluator)

    def models() -> list[ExecutableModelSpace]:  # a searched learning rate: three models, one architecture
        return ([space.freeze({"width": 32, "act": 0, "lr": lr}) for lr in (0.01, 0.05, 0.002)]
                + [space.freeze({"width": 64, "act": 1, "lr": 0.01})])

    before = set(os.listdir(os.getcwd()))
    merged = Run(service, log_dir=tmp_path / "trials", max_concurrency_cgo=4, batch_waiting_time=30,
                 batching="always")  # batched on CPU too (by default only on a GPU)
    solo = Run(service, log_dir=tmp_path / "solo", max_concurrency_cgo=1)
    runs.extend([merged, solo])
    together, alone = models(), models()
    merged.run(together)
    solo.run(alone)
    assert merged.plans == [[[0, 1, 2]]]  # the plan batched the three same-architecture models
    trial_id = merged.trial_of[0]
    assert re.fullmatch(r"0\+1\+2\+3-[0-9a-f]{6}", trial_id), trial_id  # positive, readable
    folder = tmp_path / "trials" / f"trial-{trial_id}"
    assert list(folder.glob("lightning_logs/version_0/checkpoints/*.ckpt"))  # the trial's files, in its folder
    log = (tmp_path / "trials" / f"trial-{trial_id}.log").read_text()
    assert "GPU available" in log and "Batching" not in log  # Lightning's banner in the log; batching stayed on
    assert set(os.listdir(os.getcwd())) == before  # nothing written to the working directory
    for merged_model, solo_model in zip(together, alone, strict=True):
        mine, theirs = merged_model.metrics.reported_final, solo_model.metrics.reported_final
        assert mine["val_acc"] == pytest.approx(theirs["val_acc"], abs=1 / 397 + 1e-9)  # at most one image flips
        assert mine["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-4)
    assert together[3].metrics.reported_final == alone[3].metrics.reported_final  # not batched: exactly as alone
