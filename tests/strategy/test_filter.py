"""Filter: rejected models are not run; they end Invalid, optionally with a metric."""

from __future__ import annotations

import pytest

from nasflow.space import ModelStatus
from nasflow.strategy import TPE, Chain, Filter, GridSearch, Random


def _narrow_first_layer(model) -> bool:
    return model.sample["w0"] != 8


def test_rejected_models_do_not_run_nor_spend_budget(make_space, search) -> None:
    filter_ = Filter(_narrow_first_layer)
    result = search(Chain(GridSearch(seed=0), filter_), make_space(n_layers=2), budget=12)
    assert len(result.samples) == 12 and all(s["w0"] != 8 for s in result.samples)  # all 12 accepted ones
    invalid = list(filter_.list_models(ModelStatus.Invalid))
    assert len(invalid) == 4 and all(m.sample["w0"] == 8 and m.metric is None for m in invalid)
    assert (ModelStatus.Invalid, None) in result.heard


def test_metric_for_invalid(make_space, search) -> None:
    result = search(Chain(GridSearch(shuffle=False), Filter(_narrow_first_layer, metric_for_invalid=-5.0)),
                    make_space(n_layers=2), budget=100)
    assert result.heard[:4] == [(ModelStatus.Invalid, -5.0)] * 4  # the grid starts with w0=8
    assert all(m.status == ModelStatus.Trained for m in result.strategy.list_models())


def test_tpe_learns_from_rejections(make_space, search) -> None:
    strategy = TPE(seed=0, n_startup_trials=4)
    search(Chain(strategy, Filter(_narrow_first_layer, metric_for_invalid=0.0)), make_space(), budget=15)
    rejected = [t for t in strategy.study.trials if t.params["w0"] == 8]
    assert all(t.value == 0.0 for t in rejected)


def test_patience_stops_a_strategy_that_only_proposes_rejected_models(make_space, search) -> None:
    filter_ = Filter(lambda model: False, patience=5)
    result = search(Chain(Random(seed=0), filter_), make_space(), budget=100)
    assert result.samples == [] and len(list(filter_.list_models())) == 5


@pytest.mark.parametrize("kwargs, match", [
    ({"filter_fn": 3}, "filter_fn must be a callable"),
    ({"filter_fn": bool, "patience": 0}, "patience must be at least 1"),
    ({"filter_fn": bool, "metric_for_invalid": "low"}, "metric must be a number"),
])
def test_bad_arguments_are_clear(kwargs, match) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        Filter(**kwargs)
