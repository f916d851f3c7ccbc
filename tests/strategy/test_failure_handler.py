"""FailureHandler: retries (Retrying while re-queued) and the metric for failed models."""

from __future__ import annotations

import pytest

import nasflow
from nasflow.space import ModelStatus
from nasflow.strategy import Chain, FailureHandler, Random, RegularizedEvolution, StrategyMiddleware


class StatusAtSubmit(StrategyMiddleware):
    """Records each model's status as it is submitted below the FailureHandler."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ModelStatus]] = []

    def submit_models(self, *models) -> None:
        self.seen.extend((id(m), m.status) for m in models)
        super().submit_models(*models)


def _fails_first_time(attempts: dict[str, int]):
    def evaluate(model) -> None:
        key = str([layer.out_features for layer in model.layers])
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] == 1:
            raise RuntimeError("flaky first attempt")
        nasflow.report_final_result(sum(layer.out_features for layer in model.layers))

    return evaluate


def _always_fails(model) -> None:
    raise RuntimeError("always")


def test_retry_until_trained(make_space, search) -> None:
    attempts: dict[str, int] = {}
    spy = StatusAtSubmit()
    strategy = Random(seed=0)
    result = search(Chain(strategy, FailureHandler(retry_patience=2), spy),
                    make_space(evaluate=_fails_first_time(attempts)), budget=6, continue_on_failure=True)
    models = result.samples
    assert len(models) == 3 and set(attempts.values()) == {2}  # each ran twice; retries count in the budget
    assert all(m.status == ModelStatus.Trained and m.metric is not None for m in result.engine.list_models())
    statuses_by_model: dict[int, list[ModelStatus]] = {}
    for key, status in spy.seen:
        statuses_by_model.setdefault(key, []).append(status)
    assert all(s == [ModelStatus.Frozen, ModelStatus.Retrying] for s in statuses_by_model.values())
    assert [status for status, _ in result.heard] == [ModelStatus.Trained] * 3  # failures never reached it


def test_retry_patience_runs_out(make_space, search) -> None:
    result = search(Chain(Random(seed=0), FailureHandler(retry_patience=2)), make_space(evaluate=_always_fails),
                    budget=7, continue_on_failure=True)
    assert [status for status, _ in result.heard] == [ModelStatus.Failed] * 3
    assert len(result.samples) == 3  # 3 + 3 attempts, then one attempt left in the budget


def test_queued_retry_is_given_up_when_the_budget_is_spent(make_space, search) -> None:
    attempts: dict[str, int] = {}
    result = search(Chain(Random(seed=0), FailureHandler(retry_patience=3)),
                    make_space(evaluate=_fails_first_time(attempts)), budget=3, continue_on_failure=True)
    statuses = [status for status, _ in result.heard]
    assert statuses[-1] == ModelStatus.Failed and ModelStatus.Retrying not in statuses
    assert all(m.status != ModelStatus.Retrying for m in result.engine.list_models())


def test_metric_for_failed_models_reaches_the_strategy(make_space, search) -> None:
    def fails_on_narrow(model) -> None:
        if model.layers[0].out_features == 8:
            raise RuntimeError("too narrow")
        nasflow.report_final_result(sum(layer.out_features for layer in model.layers))

    strategy = RegularizedEvolution(population_size=20, sample_size=2, seed=0)
    result = search(Chain(strategy, FailureHandler(metric=-1.0)), make_space(evaluate=fails_on_narrow),
                    budget=20, continue_on_failure=True)
    failed = [m for m in result.engine.list_models() if m.status == ModelStatus.Failed]
    assert failed and all(m.metric == -1.0 for m in failed)
    assert result.heard.count((ModelStatus.Failed, -1.0)) == len(failed)
    population_metrics = [metric for _, metric in strategy.state_dict()["population"]]
    assert population_metrics.count(-1.0) == len(failed)  # evolution learned from them
    assert all(m.status == ModelStatus.Trained for m in result.strategy.list_models())  # not listed as good


def test_retry_then_metric(make_space, search) -> None:
    result = search(Chain(Random(seed=0), FailureHandler(metric=0.0, retry_patience=1)),
                    make_space(evaluate=_always_fails), budget=4, continue_on_failure=True)
    assert result.heard == [(ModelStatus.Failed, 0.0)] * 2


@pytest.mark.parametrize("kwargs, match", [
    ({}, "retry_patience=N .* metric=M"),
    ({"retry_patience": 0}, "retry_patience must be at least 1"),
    ({"metric": 0.0, "failure_types": (ModelStatus.Trained,)}, "failure_types must be a non-empty subset"),
    ({"metric": 0.0, "failure_types": ("exploded",)}, "failure_types must be ModelStatus values"),
    ({"metric": "bad"}, "metric must be a number"),
])
def test_bad_arguments_are_clear(kwargs, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        FailureHandler(**kwargs)
