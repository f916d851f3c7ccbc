"""RegularizedEvolution says at start when the trial budget is too small for its population to evolve."""

from __future__ import annotations

import warnings

import pytest

from nasflow.strategy import RegularizedEvolution


def test_nni_defaults_on_a_100_trial_budget_warn_and_equal_random(make_space, search) -> None:
    with pytest.warns(UserWarning, match="only 0 are mutations.*population_size=20, sample_size=5"):
        result = search(RegularizedEvolution(seed=0), make_space(n_layers=4), budget=100)
    assert len(result.samples) == 100


def test_enough_budget_or_no_trial_limit_stays_quiet(make_space, search) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search(RegularizedEvolution(population_size=10, sample_size=3, seed=0), make_space(), budget=20)
        strategy = RegularizedEvolution(population_size=4, sample_size=2, seed=0)
        search(strategy, make_space(widths=(8, 16)), budget=None)  # a finite space: it stops when exhausted


def test_a_resumed_population_counts(make_space, search) -> None:
    """After a restart with the population already full, the whole remaining budget is mutations."""
    with pytest.warns(UserWarning, match="only 0 are mutations"):  # 10 models: all of them fill the population
        head = search(RegularizedEvolution(population_size=10, sample_size=3, seed=0), make_space(n_layers=4),
                      budget=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search(RegularizedEvolution(population_size=10, sample_size=3, seed=0), make_space(n_layers=4), budget=10,
               state=head.state())
    with pytest.warns(UserWarning, match="budget leaves 5 models .* 0 of them are random .* only 5 are mutations"):
        search(RegularizedEvolution(population_size=10, sample_size=3, seed=0), make_space(n_layers=4), budget=5,
               state=head.state())
