"""MedianStop: a model below the median of completed ones at the same step is cancelled."""

from __future__ import annotations

import pytest

import nasflow
from nasflow.space import ModelStatus
from nasflow.strategy import Chain, GridSearch, MedianStop

STEPS = 10


def _curve(model) -> None:
    """Reports the model's width as its metric at every step, then as its final metric."""
    width = float(model.layers[0].out_features)
    for _ in range(STEPS):
        nasflow.report_intermediate_result(width)
    nasflow.report_final_result(width)


def test_bad_models_stop_early_good_ones_complete(make_space, search) -> None:
    # grid order: 40, 32, 24 (warmup), then 48 (good), 16 and 8 (bad)
    space = make_space(n_layers=1, widths=(40, 32, 24, 48, 16, 8), evaluate=_curve)
    result = search(Chain(GridSearch(shuffle=False), MedianStop(warmup=3)), space, budget=10)
    by_width = {m.sample["w0"]: m for m in result.engine.list_models()}
    for width in (40, 32, 24, 48):
        assert by_width[width].status == ModelStatus.Trained
        assert len(by_width[width].metrics.intermediates) == STEPS
    for width in (16, 8):
        assert by_width[width].status == ModelStatus.Interrupted
        assert len(by_width[width].metrics.intermediates) < STEPS and by_width[width].metric is None
    assert [m.sample["w0"] for m in result.strategy.list_models()] == [48, 40, 32, 24]


def test_nothing_is_stopped_during_warmup(make_space, search) -> None:
    space = make_space(n_layers=1, widths=(40, 32, 24, 16, 8), evaluate=_curve)
    result = search(Chain(GridSearch(shuffle=False), MedianStop(warmup=5)), space, budget=10)
    assert all(m.status == ModelStatus.Trained for m in result.engine.list_models())


def test_start_step_delays_the_rule(make_space, search) -> None:
    space = make_space(n_layers=1, widths=(40, 32, 24, 8), evaluate=_curve)
    result = search(Chain(GridSearch(shuffle=False), MedianStop(warmup=3, start_step=6)), space, budget=10)
    stopped = [m for m in result.engine.list_models() if m.status == ModelStatus.Interrupted]
    assert len(stopped) == 1 and len(stopped[0].metrics.intermediates) == 6  # decided at step 6, no further report


def test_state_keeps_completed_curves(make_space, search) -> None:
    space = make_space(n_layers=1, widths=(40, 32, 24), evaluate=_curve)
    median_stop = MedianStop(warmup=3)
    search(Chain(GridSearch(shuffle=False), median_stop), space, budget=10)
    restored = MedianStop(warmup=3)
    restored.load_state_dict(median_stop.state_dict())
    assert restored.state_dict() == median_stop.state_dict() and len(restored.state_dict()["completed"]) == 3


@pytest.mark.parametrize("kwargs, match", [({"warmup": 0}, "warmup"), ({"start_step": 0}, "start_step")])
def test_bad_arguments_are_clear(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        MedianStop(**kwargs)


def test_tpe_is_told_stopped_models_as_pruned_with_their_curve(make_space, search) -> None:
    import optuna

    from nasflow.strategy import TPE

    strategy = TPE(seed=0, n_startup_trials=3)
    space = make_space(n_layers=1, widths=(40, 32, 24, 48, 16, 8), evaluate=_curve)
    result = search(Chain(strategy, MedianStop(warmup=2)), space, budget=6)
    stopped = [m for m in result.engine.list_models() if m.status == ModelStatus.Interrupted]
    pruned = [t for t in strategy.study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert stopped and len(pruned) == len(stopped)
    assert all(t.intermediate_values for t in pruned)
