"""GridSearch: covers a finite space once, stops when exhausted, walks continuous spaces by level."""

from __future__ import annotations

import itertools

import pytest

import nasflow
from nasflow.space import ModelStatus
from nasflow.strategy import GridSearch

WIDTHS = (8, 16, 32, 64)  # the default widths of the conftest space


def test_covers_the_whole_finite_space_once_and_stops(make_space, search) -> None:
    result = search(GridSearch(seed=0), make_space(), budget=1000)
    expected = {(a, b, c) for a, b, c in itertools.product(WIDTHS, repeat=3)}
    ran = [(s["w0"], s["w1"], s["w2"]) for s in result.samples]
    assert len(ran) == len(set(ran)) == 64  # stopped at exhaustion, far below the budget
    assert set(ran) == expected
    best = next(result.strategy.list_models(limit=1))
    assert best.sample == {"w0": 64, "w1": 64, "w2": 64} and best.metric == 192.0


def test_unshuffled_order_is_the_grid_order(make_space, search) -> None:
    result = search(GridSearch(shuffle=False), make_space(n_layers=2), budget=5)
    assert [(s["w0"], s["w1"]) for s in result.samples] == [(8, 8), (8, 16), (8, 32), (8, 64), (16, 8)]


def test_shuffle_is_reproducible_with_a_seed(make_space, search) -> None:
    first = search(GridSearch(seed=3), make_space(), budget=20).keys
    again = search(GridSearch(seed=3), make_space(), budget=20).keys
    other = search(GridSearch(seed=4), make_space(), budget=20).keys
    assert first == again
    assert first != other


def test_constraints_are_honoured(make_space, search) -> None:
    result = search(GridSearch(seed=0), make_space(limit=64), budget=1000)
    assert result.samples and all(sum(s.values()) <= 64 for s in result.samples)
    valid = sum(1 for combo in itertools.product(WIDTHS, repeat=3) if sum(combo) <= 64)
    assert len(result.samples) == valid


def _lr_score(model, lr: float) -> None:
    nasflow.report_final_result(-abs(lr - 0.3))


def test_continuous_space_is_walked_level_by_level(make_space, search) -> None:
    space = make_space(n_layers=1, widths=(8,), evaluate=_lr_score, lr=nasflow.uniform("lr", 0.0, 1.0))
    result = search(GridSearch(shuffle=False), space, budget=7)
    lrs = [s["lr"] for s in result.samples]
    assert lrs == [0.5, 0.25, 0.75, 0.125, 0.375, 0.625, 0.875]


def test_fixed_granularity_is_one_level_then_stops(make_space, search) -> None:
    space = make_space(n_layers=1, widths=(8,), evaluate=_lr_score, lr=nasflow.uniform("lr", 0.0, 1.0))
    result = search(GridSearch(granularity=2, seed=1), space, budget=100)
    assert sorted(s["lr"] for s in result.samples) == [0.25, 0.5, 0.75]
    assert all(m.status == ModelStatus.Trained for m in result.engine.list_models())


@pytest.mark.parametrize("kwargs, match", [
    ({"granularity": 0}, "granularity must be at least 1"),
    ({"seed": "x"}, "seed must be an int"),
])
def test_bad_arguments_are_clear(kwargs, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        GridSearch(**kwargs)
