"""NasExperiment with the sequential engine and a real store: run, stop, view, export, and refusals."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import HANG_GUARD_S, wait_until
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.execution import ModelEvent, ModelEventType
from nasflow.experiment import ExperimentStore, NasExperiment, NasExperimentConfig, StoreError, UntrustedStoreError
from nasflow.experiment import store as store_module
from nasflow.experiment.experiment import EXPERIMENT_FAILED, EXPERIMENT_STOPPED
from nasflow.experiment.store import StoreCorruptError, StoreExistsError, StoreForeignError, StoreReadOnlyError
from nasflow.mutable import SampleValidationError
from nasflow.nn import ModelSpace, MutableLinear
from nasflow.space import ExecutableModelSpace, ModelStatus, SimplifiedModelSpace
from nasflow.strategy import Random

WIDTHS = [1, 2, 3, 4, 5, 6, 7, 8]


class Tiny(ModelSpace):
    def __init__(self, n_in: int = 2) -> None:
        super().__init__()
        self.fc = MutableLinear(n_in, nasflow.choice("width", WIDTHS))

    def forward(self, x: Any) -> Any:
        return self.fc(x)


def by_width(model: nn.Module) -> None:
    """The metric is the width the model was built with: a wrong model shows in the numbers."""
    width = model.fc.out_features
    nasflow.report_intermediate_result(width / 20)
    nasflow.report_final_result(width / 10)


def config(tmp_path: Path, **kwargs: Any) -> NasExperimentConfig:
    return NasExperimentConfig("sequential", "simplified", experiment_working_directory=str(tmp_path),
                               progress=False, **kwargs)


def digest(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with a hash of its bytes."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tmp_path: Path) -> NasExperiment:
    exp = NasExperiment(Tiny(), FunctionalEvaluator(by_width), Random(seed=0), config(tmp_path, max_trial_number=5))
    assert exp.run() is True
    return exp


# ----- a run and its results ---------------------------------------------------------------------


def test_run_records_every_model_and_exports_the_best(tmp_path: Path, finished: NasExperiment) -> None:
    with ExperimentStore.open(tmp_path / finished.id, read_only=True) as store:
        assert store.experiment().status == "done"
        records = store.models()
    assert len(records) == 5 and all(r.status == "trained" for r in records)
    for record in records:
        width = record.sample["width"]
        assert record.metrics.intermediates == [width / 20] and record.metrics.final == width / 10
        assert [h.status for h in record.history] == ["frozen", "training", "trained"]

    widths = sorted((r.sample["width"] for r in records), reverse=True)
    assert finished.export_top_models(3) == [{"width": w} for w in widths[:3]]
    modules = finished.export_top_models(2, formatter="instance")
    assert [m.fc.out_features for m in modules] == widths[:2]
    assert all(isinstance(m, nn.Module) for m in modules)
    assert len(finished.export_top_models(100)) == 5
    with pytest.raises(ValueError, match="formatter='code' needs the graph model format.*'simplified'"):
        finished.export_top_models(1, formatter="code")
    with pytest.raises(ValueError, match="formatter must be 'dict', 'instance' or 'code'"):
        finished.export_top_models(1, formatter="onnx")  # type: ignore[arg-type]

    assert [m.status for m in finished.list_models()] == [ModelStatus.Trained] * 5
    assert finished.list_models(ModelStatus.Failed) == []
    finished.stop()  # already over: nothing to stop, and the run still counts as completed
    assert finished.wait_completion() is True


def test_a_trial_commits_once_per_event_its_row_with_its_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recording layer writes each event in one transaction; under the sequential engine (which runs
    a model inside submit_models) the strategy's saved progress and the new model's row commit with its
    start. Per trial: start, intermediate, final, end (Random's state does not change at the end); every
    row still holds its whole history."""
    commits: list[str] = []
    connect = store_module._connect

    def traced(db: Path, mode: str) -> sqlite3.Connection:
        conn = connect(db, mode)
        if mode == "rw":
            conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        return conn

    monkeypatch.setattr(store_module, "_connect", traced)
    counts: dict[int, int] = {}
    for trials in (1, len(WIDTHS)):
        commits.clear()
        exp = NasExperiment(Tiny(), FunctionalEvaluator(by_width), Random(seed=0),
                            config(tmp_path, max_trial_number=trials))
        assert exp.run() is True
        counts[trials] = len(commits)
    assert (counts[len(WIDTHS)] - counts[1]) / (len(WIDTHS) - 1) <= 4, counts  # a run's start and end cancel out
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        for record in store.models():
            assert [change.status for change in record.history] == ["frozen", "training", "trained"]
            assert record.metrics.intermediates == [record.sample["width"] / 20]


def test_view_is_read_only(tmp_path: Path, finished: NasExperiment) -> None:
    before = digest(tmp_path / finished.id)
    view = NasExperiment.view(finished.id, experiment_working_directory=str(tmp_path))
    assert view.export_top_models(2) == finished.export_top_models(2)
    with pytest.raises(UntrustedStoreError, match=rf"view\('{finished.id}', trusted=True\)"):
        view.export_top_models(1, formatter="instance")  # that would unpickle the store's setup
    trusted = NasExperiment.view(finished.id, experiment_working_directory=str(tmp_path), trusted=True)
    [best] = trusted.export_top_models(1, formatter="instance")
    assert best.fc.out_features == finished.export_top_models(1)[0]["width"]
    trusted._require_store().close()
    models = view.list_models()
    assert len(models) == 5 and all(m.status == ModelStatus.Trained and m.metric is not None for m in models)
    assert [m.model_id for m in view.list_models(ModelStatus.Trained)] == [0, 1, 2, 3, 4]
    store = view._require_store()
    assert store.read_only
    with pytest.raises(StoreReadOnlyError):
        store.set_experiment_status("running")
    store.close()
    after = {name: value for name, value in digest(tmp_path / finished.id).items() if not name.endswith("-shm")}
    assert after == {name: value for name, value in before.items() if not name.endswith("-shm")}


def test_a_failing_model_is_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    def fails_on_wide(model: nn.Module) -> None:
        if model.fc.out_features > 4:
            raise RuntimeError(f"too wide: {model.fc.out_features}")
        by_width(model)

    cfg = config(tmp_path, max_trial_number=8)
    exp = NasExperiment(Tiny(), FunctionalEvaluator(fails_on_wide), Random(seed=1), cfg)
    assert exp.run() is True
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        records = store.models()
    assert len(records) == 8
    for record in records:
        if record.sample["width"] > 4:
            assert record.status == "failed"
            assert "Traceback" in (record.error or "") and f"too wide: {record.sample['width']}" in (record.error or "")
        else:
            assert record.status == "trained"
    assert all(sample["width"] <= 4 for sample in exp.export_top_models(8))


def test_an_engine_error_fails_the_experiment(tmp_path: Path) -> None:
    def broken(model: nn.Module) -> None:
        raise ValueError("evaluator bug")

    cfg = config(tmp_path, max_trial_number=3, continue_on_failure=False)
    exp = NasExperiment(Tiny(), FunctionalEvaluator(broken), Random(), cfg)
    with pytest.raises(RuntimeError, match=f"Experiment {exp.id} failed.*evaluator bug"):
        exp.run()
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        assert store.experiment().status == "failed"
        [record] = store.models()
    assert record.status == "failed" and "ValueError: evaluator bug" in (record.error or "")


# ----- stop ---------------------------------------------------------------------------------------


class EarlyStopper(Random):
    """Random search that stops model 0 after its first report (as a median-stop rule would)."""

    def _initialize(self, model_space: ExecutableModelSpace, engine: Any) -> ExecutableModelSpace:
        engine.register_model_event_callback(ModelEventType.IntermediateMetric, self._early_stop)
        return model_space

    def _early_stop(self, event: ModelEvent) -> None:
        if event.model.model_id == 0:
            self.engine.cancel_models(event.model)


def slow_while_flagged(model: nn.Module, flag: str) -> None:
    """Report every 10 ms while ``flag`` exists (at most HANG_GUARD_S), then finish."""
    deadline = time.monotonic() + HANG_GUARD_S
    nasflow.report_intermediate_result(0.0)
    while Path(flag).exists() and time.monotonic() < deadline:
        nasflow.report_intermediate_result(0.0)
        time.sleep(0.01)
    by_width(model)


def test_stop_marks_only_the_models_it_cut_short_and_resume_reruns_only_those(tmp_path: Path) -> None:
    flag = tmp_path / "slow"
    flag.touch()
    evaluator = FunctionalEvaluator(slow_while_flagged, flag=str(flag))
    exp = NasExperiment(Tiny(), evaluator, EarlyStopper(seed=0), config(tmp_path, max_trial_number=4))
    exp.run(wait_completion=False)
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        wait_until(lambda: store.count_models("training") == 1 and store.count_models("interrupted") == 1)
    exp.stop()
    assert exp.wait_completion() is False

    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        assert store.experiment().status == "stopped"
        early, cut = store.models()
    assert early.status == cut.status == "interrupted"
    assert early.error == "cancelled while running"  # the strategy's decision stands
    assert cut.error == EXPERIMENT_STOPPED

    flag.unlink()
    resumed = NasExperiment.resume(exp.id, experiment_working_directory=str(tmp_path))
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        records = store.models()
        assert store.experiment().status == "done"
    assert len(records) == 4  # the budget counts the early-stopped model
    assert records[0].status == "interrupted" and records[0].error == "cancelled while running"
    assert [r.status for r in records[1:]] == ["trained"] * 3
    assert records[1].model_id == cut.model_id and records[1].metrics.final == cut.sample["width"] / 10
    assert len({r.model_id for r in resumed.list_models()}) == 4


def test_ctrl_c_during_run_stops_the_experiment_and_waits_for_it(tmp_path: Path) -> None:
    flag = tmp_path / "slow"
    flag.touch()
    evaluator = FunctionalEvaluator(slow_while_flagged, flag=str(flag))
    exp = NasExperiment(Tiny(), evaluator, Random(seed=0), config(tmp_path, max_trial_number=3))
    store_dir = tmp_path / exp.id

    def training() -> bool:
        try:
            with ExperimentStore.open(store_dir, read_only=True) as store:
                return store.count_models("training") > 0
        except StoreError:  # not there yet, or being created
            return False

    def interrupt_when_training() -> None:
        # No Ctrl-C if no model ever trains: this thread fails, and so does the run() assertion below.
        wait_until(training, "a model to start training")
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does, while run() waits

    threading.Thread(target=interrupt_when_training, daemon=True).start()
    assert exp.run() is False  # stopped, not completed, and the KeyboardInterrupt was handled
    with ExperimentStore.open(store_dir, read_only=True) as store:  # recorded before run() returned
        assert store.experiment().status == "stopped"
        [record] = store.models()
    assert record.status == "interrupted" and record.error == EXPERIMENT_STOPPED


class CtrlCAtOnce(Random):
    """Presses Ctrl-C the moment the search starts: the main thread is then still inside ``run()``'s
    start-up (launching this thread), where a KeyboardInterrupt used to escape and discard the store."""

    def __init__(self, pressed: Path) -> None:
        super().__init__(seed=0)
        self.pressed = pressed  # once: the resumed search runs on

    def _run(self) -> None:
        if not self.pressed.exists():
            self.pressed.touch()
            os.kill(os.getpid(), signal.SIGINT)
        super()._run()


def test_ctrl_c_as_the_search_starts_stops_it_cleanly(tmp_path: Path) -> None:
    flag = tmp_path / "slow"
    flag.touch()  # never removed: only the stop ends the first model
    exp = NasExperiment(Tiny(), FunctionalEvaluator(slow_while_flagged, flag=str(flag)),
                        CtrlCAtOnce(tmp_path / "pressed"),
                        config(tmp_path, max_trial_number=3))
    assert exp.run() is False  # stopped, wherever the Ctrl-C landed
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        assert store.experiment().status == "stopped"
        assert [r.status for r in store.models()] in ([], ["interrupted"])
    flag.unlink()
    assert NasExperiment.resume(exp.id, experiment_working_directory=str(tmp_path)).wait_completion() is True


class FailsOnce(Random):
    """Random search that fails while its first two models train (a strategy's bug, a lost cluster), once:
    the file ``fail`` says it has yet to fail."""

    def __init__(self, fail: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail = fail

    def _run(self) -> None:
        if not Path(self.fail).exists():
            super()._run()
            return
        self.engine.submit_models(self._draw(), self._draw())
        while len(list(self.engine.list_models(ModelStatus.Training))) < 2:
            self.engine.wait_models(timeout=0.05)
        Path(self.fail).unlink()
        raise RuntimeError("strategy bug")


def test_resume_after_a_failed_run_reruns_every_model_it_cut_short(tmp_path: Path) -> None:
    flag, fail = tmp_path / "slow", tmp_path / "fail"
    flag.touch()
    fail.touch()
    cfg = NasExperimentConfig("ts", "simplified", "local", trial_concurrency=2, max_trial_number=3,
                              experiment_working_directory=str(tmp_path), progress=False)
    exp = NasExperiment(Tiny(), FunctionalEvaluator(slow_while_flagged, flag=str(flag)), FailsOnce(str(fail), seed=0),
                        cfg)
    with pytest.raises(RuntimeError, match="strategy bug"):
        exp.run()
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        assert store.experiment().status == "failed"
        cut = store.models()
    assert [(r.status, r.error) for r in cut] == [("interrupted", EXPERIMENT_FAILED)] * 2

    flag.unlink()
    NasExperiment.resume(exp.id, experiment_working_directory=str(tmp_path))
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        assert store.experiment().status == "done"
        records = store.models()
    assert [r.status for r in records] == ["trained"] * 3
    assert [r.sample for r in records[:2]] == [r.sample for r in cut]  # the same models, run to their end
    assert all(r.metrics.final == r.sample["width"] / 10 for r in records)


# ----- refusals -----------------------------------------------------------------------------------


def test_unknown_strategy_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="sed"):
        Random(sed=1)  # type: ignore[call-arg]


def test_a_sample_the_space_does_not_contain_names_the_label() -> None:
    with pytest.raises(SampleValidationError, match="width") as info:
        Tiny().freeze({"width": 99})
    assert "99" in str(info.value)
    space = SimplifiedModelSpace.from_model(Tiny(), FunctionalEvaluator(by_width))
    with pytest.raises(SampleValidationError, match="width"):
        space.freeze({"width": 99})
    with pytest.raises(SampleValidationError, match="'width' is missing"):
        space.freeze({})
    assert space.freeze({"width": 3}).executable_model().fc.out_features == 3


def test_missing_strategy_or_evaluator_is_refused() -> None:
    with pytest.raises(TypeError, match="needs a strategy"):
        NasExperiment(Tiny(), FunctionalEvaluator(by_width))
    with pytest.raises(TypeError, match="needs an evaluator"):
        NasExperiment(Tiny(), None, Random())


def test_an_unpicklable_evaluator_is_refused_before_anything_runs(tmp_path: Path) -> None:
    evaluator = FunctionalEvaluator(by_width, lock=threading.Lock())
    exp = NasExperiment(Tiny(), evaluator, Random(), config(tmp_path / "exps"))
    with pytest.raises(TypeError, match="The evaluator cannot be pickled.*lock"):
        exp.run()
    assert not (tmp_path / "exps").exists()


class RefusesTheSpace(Random):
    def _initialize(self, model_space: ExecutableModelSpace, engine: Any) -> ExecutableModelSpace:
        raise ValueError("RefusesTheSpace needs a space with a 'depth' label")


def test_a_strategy_that_refuses_the_space_leaves_no_experiment_behind(tmp_path: Path) -> None:
    exp = NasExperiment(Tiny(), FunctionalEvaluator(by_width), RefusesTheSpace(), config(tmp_path / "exps"))
    with pytest.raises(ValueError, match="needs a space with a 'depth' label"):
        exp.run()
    assert list((tmp_path / "exps").iterdir()) == []


def test_an_existing_experiment_is_never_overwritten(tmp_path: Path, finished: NasExperiment) -> None:
    before = digest(tmp_path / finished.id)
    again = NasExperiment(Tiny(), FunctionalEvaluator(by_width), Random(), config(tmp_path), id=finished.id)
    with pytest.raises(StoreExistsError, match="already exists"):
        again.run()
    assert digest(tmp_path / finished.id) == before


def test_a_pid_left_running_in_the_store_never_blocks_a_resume(tmp_path: Path, finished: NasExperiment) -> None:
    with ExperimentStore.open(tmp_path / finished.id) as store:
        store.set_experiment_status("running", pid=1)  # a live pid, as a killed run's reused pid would be
    NasExperiment.resume(finished.id, experiment_working_directory=str(tmp_path))  # the lock alone decides
    with ExperimentStore.open(tmp_path / finished.id, read_only=True) as store:
        assert store.experiment().status == "done" and store.count_models("trained") == 5


def test_resume_of_an_unknown_experiment_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"No experiment 'nope' under {tmp_path}.*nasflow list"):
        NasExperiment.resume("nope", experiment_working_directory=str(tmp_path))
    with pytest.raises(ValueError, match="No experiment 'nope'"):
        NasExperiment.view("nope", experiment_working_directory=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["corrupt", "foreign"])
def test_a_corrupt_or_foreign_database_is_refused_untouched(tmp_path: Path, kind: str) -> None:
    directory = tmp_path / "bad"
    directory.mkdir()
    db = directory / "nasflow.db"
    if kind == "corrupt":
        db.write_bytes(b"this is not a database, just some bytes " * 200)
        expected: type[StoreError] = StoreCorruptError
    else:
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE notes (body TEXT)")
            conn.execute("INSERT INTO notes VALUES ('mine')")
        conn.close()
        expected = StoreForeignError
    before = digest(directory)
    with pytest.raises(expected, match=str(db)):
        NasExperiment.resume("bad", experiment_working_directory=str(tmp_path))
    with pytest.raises(expected):
        NasExperiment.view("bad", experiment_working_directory=str(tmp_path))
    assert digest(directory) == before
