"""Random: reproducible with a seed, never repeats with dedup, finds the best of a small space."""

from __future__ import annotations

from nasflow.strategy import Random


def test_finds_the_best_of_a_small_space(make_space, search) -> None:
    result = search(Random(seed=0), make_space(n_layers=2), budget=16)
    assert len(set(result.keys)) == 16
    assert next(result.strategy.list_models(limit=1)).metric == 128.0


def test_same_seed_same_samples(make_space, search) -> None:
    first = search(Random(seed=2), make_space(), budget=10).keys
    assert first == search(Random(seed=2), make_space(), budget=10).keys
    assert first != search(Random(seed=3), make_space(), budget=10).keys


def test_list_models_sorts_and_limits(make_space, search) -> None:
    result = search(Random(seed=0), make_space(), budget=10)
    metrics = [m.metric for m in result.strategy.list_models()]
    assert metrics == sorted(metrics, reverse=True) and len(metrics) == 10
    assert len(list(result.strategy.list_models(limit=3))) == 3
    unsorted = [m.metric for m in result.strategy.list_models(sort=False)]
    assert unsorted == [m.metric for m in result.engine.list_models()]
