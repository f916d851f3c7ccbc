"""The sequential engine, in process: event order, status semantics, failures, budget, cancellation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.execution import ModelEvent, ModelEventType, SequentialExecutionEngine
from nasflow.execution.sequential import NO_FINAL_METRIC
from nasflow.nn import ModelSpace, MutableLinear
from nasflow.space import ExecutableModelSpace, ModelStatus, SimplifiedModelSpace


class Tiny(ModelSpace):
    """One searched width; enough to build a real frozen model."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = MutableLinear(2, nasflow.choice("width", [1, 2, 3, 4]))

    def forward(self, x: Any) -> Any:
        return self.fc(x)


def make_model(fn: Callable[..., Any], width: int = 1, **kwargs: Any) -> ExecutableModelSpace:
    space = SimplifiedModelSpace.from_model(Tiny(), FunctionalEvaluator(fn, **kwargs))
    return space.freeze({"width": width})


class Recorder:
    """Every event with a snapshot of its model taken inside the callback."""

    def __init__(self, engine: SequentialExecutionEngine) -> None:
        self.log: list[tuple[str, int | None, ModelStatus, float | None, list[Any], str | None]] = []
        for event_type in ModelEventType:
            engine.register_model_event_callback(event_type, self.on_event)

    def on_event(self, event: ModelEvent) -> None:
        model = event.model
        self.log.append((event.event_type.value, model.model_id, model.status, model.metric,
                         list(model.metrics.reported_intermediates), getattr(event, "error", None)))

    def kinds(self, model_id: int) -> list[str]:
        return [entry[0] for entry in self.log if entry[1] == model_id]

    def end_error(self, model_id: int) -> str | None:
        ends = [entry for entry in self.log if entry[1] == model_id and entry[0] == "training_end"]
        assert len(ends) == 1, self.log
        return ends[0][5]


def two_epochs(model: nn.Module, final: float = 0.9) -> None:
    assert isinstance(model, nn.Module)
    nasflow.report_intermediate_result(0.1)
    nasflow.report_intermediate_result({"default": 0.2, "loss": 1.5})
    nasflow.report_final_result(final)


def broken(model: nn.Module) -> None:
    nasflow.report_intermediate_result(0.3)
    raise ValueError("broken evaluator 42")


def no_final(model: nn.Module) -> None:
    nasflow.report_intermediate_result(0.5)


# ----- order and bookkeeping ---------------------------------------------------------------------


def test_events_arrive_in_order_with_bookkeeping_applied_before_callbacks() -> None:
    engine = SequentialExecutionEngine()
    recorder = Recorder(engine)
    first, second = make_model(two_epochs, 1), make_model(two_epochs, 2, final=0.7)
    engine.submit_models(first, second)

    assert (first.model_id, second.model_id) == (0, 1)
    expected = ["training_start", "intermediate_metric", "intermediate_metric", "final_metric", "training_end"]
    assert recorder.kinds(0) == expected and recorder.kinds(1) == expected
    assert [entry[1] for entry in recorder.log] == [0] * 5 + [1] * 5  # one model after the other
    start, inter1, inter2, final, end = recorder.log[:5]
    assert start[2] == ModelStatus.Training and start[3] is None
    assert inter1[4] == [0.1] and inter2[4] == [0.1, {"default": 0.2, "loss": 1.5}]
    assert final[2] == ModelStatus.Training and final[3] == pytest.approx(0.9)  # metric set before callbacks
    assert end[2] == ModelStatus.Trained and end[5] is None
    assert first.status == second.status == ModelStatus.Trained
    assert second.metric == pytest.approx(0.7)
    assert list(engine.list_models(ModelStatus.Trained)) == [first, second]
    engine.wait_models(first, second, wait_all=True)  # returns at once: everything already ran


def test_callbacks_run_in_registration_order_and_can_be_removed() -> None:
    engine = SequentialExecutionEngine()
    calls: list[str] = []
    a = lambda event: calls.append("a")
    b = lambda event: calls.append("b")
    engine.register_model_event_callback(ModelEventType.FinalMetric, a)
    engine.register_model_event_callback(ModelEventType.FinalMetric, b)
    engine.submit_models(make_model(two_epochs))
    engine.unregister_model_event_callback(ModelEventType.FinalMetric, a)
    engine.submit_models(make_model(two_epochs))
    assert calls == ["a", "b", "b"]


# ----- failures -------------------------------------------------------------------------------------


def test_failing_model_is_failed_with_its_traceback_and_the_engine_goes_on() -> None:
    engine = SequentialExecutionEngine(continue_on_failure=True)
    recorder = Recorder(engine)
    bad, good = make_model(broken), make_model(two_epochs)
    engine.submit_models(bad, good)

    assert bad.status == ModelStatus.Failed and good.status == ModelStatus.Trained
    error = recorder.end_error(0)
    assert error is not None
    assert "Traceback" in error and "ValueError: broken evaluator 42" in error and "in broken" in error
    assert bad.metrics.intermediates == [0.3] and bad.metric is None
    assert recorder.kinds(0) == ["training_start", "intermediate_metric", "training_end"]


def test_failure_is_reraised_after_marking_failed_without_continue_on_failure() -> None:
    engine = SequentialExecutionEngine(continue_on_failure=False)
    recorder = Recorder(engine)
    bad, never = make_model(broken), make_model(two_epochs)
    with pytest.raises(RuntimeError, match="Model 0 failed.*continue_on_failure=True.*broken evaluator 42") as info:
        engine.submit_models(bad, never)

    assert isinstance(info.value.__cause__, ValueError)
    assert bad.status == ModelStatus.Failed  # marked, and every observer told, before the raise
    assert recorder.kinds(0)[-1] == "training_end" and "Traceback" in (recorder.end_error(0) or "")
    assert never.status == ModelStatus.Frozen and never.model_id is None  # the rest of the batch did not run
    assert list(engine.list_models()) == [bad]


def test_model_that_never_reports_a_final_metric_is_failed_with_a_clear_reason() -> None:
    engine = SequentialExecutionEngine(continue_on_failure=False)  # not an exception: nothing to re-raise
    recorder = Recorder(engine)
    model = make_model(no_final)
    engine.submit_models(model)

    assert model.status == ModelStatus.Failed
    assert recorder.end_error(0) == NO_FINAL_METRIC
    assert "report_final_result" in NO_FINAL_METRIC
    assert model.metrics.intermediates == [0.5]


def test_invalid_metric_fails_the_model_not_the_engine() -> None:
    def reports_text(model: nn.Module) -> None:
        nasflow.report_final_result("high")

    engine = SequentialExecutionEngine(continue_on_failure=True)
    recorder = Recorder(engine)
    model = make_model(reports_text)
    engine.submit_models(model)
    assert model.status == ModelStatus.Failed
    assert "A metric must be a number" in (recorder.end_error(0) or "")


def test_a_callbacks_error_is_raised_not_recorded_as_the_models_failure() -> None:
    def swallowing(model: nn.Module) -> None:
        try:
            nasflow.report_intermediate_result(0.1)
        except Exception:  # an evaluator's broad except must not hide its caller's bug either
            pass
        nasflow.report_final_result(1.0)

    engine = SequentialExecutionEngine(continue_on_failure=True)
    recorder = Recorder(engine)

    def buggy(event: ModelEvent) -> None:
        raise KeyError("strategy bug")

    engine.register_model_event_callback(ModelEventType.IntermediateMetric, buggy)
    model = make_model(swallowing)
    with pytest.raises(KeyError, match="strategy bug"):
        engine.submit_models(model)
    assert model.status == ModelStatus.Training  # not blamed on the model: it never ended
    assert recorder.kinds(0) == ["training_start", "intermediate_metric"]

    engine.unregister_model_event_callback(ModelEventType.IntermediateMetric, buggy)
    after = make_model(two_epochs)
    engine.submit_models(after)
    assert after.status == ModelStatus.Trained


# ----- budget --------------------------------------------------------------------------------------


def test_max_model_count_stops_running_models() -> None:
    engine = SequentialExecutionEngine(max_model_count=2)
    models = [make_model(two_epochs) for _ in range(3)]
    assert engine.budget_available()
    engine.submit_models(*models)

    assert [m.status for m in models] == [ModelStatus.Trained, ModelStatus.Trained, ModelStatus.Frozen]
    assert models[2].model_id is None
    assert not engine.budget_available()
    assert engine.idle_worker_available()


def test_max_duration_stops_running_models() -> None:
    def slow(model: nn.Module) -> None:
        time.sleep(0.15)
        nasflow.report_final_result(1.0)

    engine = SequentialExecutionEngine(max_duration=0.25)
    ran = 0
    start = time.monotonic()
    while engine.budget_available():
        engine.submit_models(make_model(slow))
        ran += 1
        assert ran < 10, "max_duration was not honoured"
    assert 1 <= ran <= 2
    assert time.monotonic() - start >= 0.25
    late = make_model(slow)
    engine.submit_models(late)
    assert late.status == ModelStatus.Frozen


def test_budget_counts_models_run_before_a_restart() -> None:
    engine = SequentialExecutionEngine(max_model_count=3)
    engine.submit_models(make_model(two_epochs), make_model(two_epochs))
    state = engine.state_dict()
    assert state["model_count"] == 2 and state["next_model_id"] == 2

    restarted = SequentialExecutionEngine(max_model_count=3)
    restarted.load_state_dict(state)
    models = [make_model(two_epochs), make_model(two_epochs)]
    restarted.submit_models(*models)
    assert models[0].model_id == 2 and models[0].status == ModelStatus.Trained
    assert models[1].status == ModelStatus.Frozen
    assert not restarted.budget_available()


# ----- cancellation --------------------------------------------------------------------------------


def test_cancel_from_a_callback_interrupts_the_model_at_its_next_report() -> None:
    def three_epochs(model: nn.Module) -> None:
        for epoch in range(3):
            try:
                nasflow.report_intermediate_result(float(epoch))
            except Exception:  # a user's broad except must not swallow the interruption
                pass
        nasflow.report_final_result(1.0)

    engine = SequentialExecutionEngine(continue_on_failure=False)
    recorder = Recorder(engine)

    def stop_after_first(event: ModelEvent) -> None:
        if event.model.model_id == 0:
            engine.cancel_models(event.model)

    engine.register_model_event_callback(ModelEventType.IntermediateMetric, stop_after_first)
    cancelled, after = make_model(three_epochs), make_model(three_epochs)
    engine.submit_models(cancelled, after)

    assert cancelled.status == ModelStatus.Interrupted
    assert cancelled.metrics.intermediates == [0.0] and cancelled.metric is None
    assert recorder.kinds(0) == ["training_start", "intermediate_metric", "training_end"]
    assert recorder.end_error(0) == "cancelled while running"
    assert after.status == ModelStatus.Trained and after.metrics.intermediates == [0.0, 1.0, 2.0]


def test_cancel_from_another_thread_and_cancel_of_an_idle_model() -> None:
    def long_training(model: nn.Module) -> None:
        while True:  # only the cancel ends it (pytest-timeout catches a cancel that never lands)
            nasflow.report_intermediate_result(0.0)
            time.sleep(0.005)

    engine = SequentialExecutionEngine()
    model = make_model(long_training)
    idle = make_model(two_epochs)
    engine.cancel_models(idle)  # not running: nothing to interrupt, and nothing remembered

    def canceller() -> None:
        while model.status != ModelStatus.Training:
            time.sleep(0.005)
        time.sleep(0.05)
        engine.cancel_models(model)

    thread = threading.Thread(target=canceller)
    thread.start()
    engine.submit_models(model)
    thread.join()
    assert model.status == ModelStatus.Interrupted and model.metrics.intermediates

    engine.submit_models(idle)
    assert idle.status == ModelStatus.Trained
