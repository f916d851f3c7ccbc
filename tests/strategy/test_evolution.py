"""RegularizedEvolution: finds the best, reproducible, deduplicates, honours constraints, validates."""

from __future__ import annotations

import pytest

from nasflow.strategy import RegularizedEvolution


def _evolution(**kwargs) -> RegularizedEvolution:
    return RegularizedEvolution(**{"population_size": 8, "sample_size": 3, "mutation_prob": 0.2, "seed": 0, **kwargs})


@pytest.mark.parametrize("crossover", [False, True])
def test_finds_the_best_model(make_space, search, crossover) -> None:
    result = search(_evolution(crossover=crossover), make_space(n_layers=4), budget=80)  # of 256 models
    best = next(result.strategy.list_models(limit=1))
    assert best.metric == 256.0 and best.sample == {"w0": 64, "w1": 64, "w2": 64, "w3": 64}
    assert len(result.keys) == len(set(result.keys)) == 80  # dedup: nothing ran twice


def test_children_are_mutations_of_the_population(make_space, search) -> None:
    """After the random start every model differs from an earlier model in few labels."""
    result = search(_evolution(mutation_prob=0.0), make_space(n_layers=4), budget=30)
    samples = result.samples
    for i, child in enumerate(samples[8:], start=8):
        closest = min(sum(child[k] != earlier[k] for k in child) for earlier in samples[:i])
        assert closest == 1  # mutation_prob=0 still changes exactly one label


def test_same_seed_same_samples(make_space, search) -> None:
    first = search(_evolution(seed=5), make_space(), budget=30).keys
    again = search(_evolution(seed=5), make_space(), budget=30).keys
    other = search(_evolution(seed=6), make_space(), budget=30).keys
    assert first == again and first != other


def test_mutations_keep_to_the_constraints(make_space, search) -> None:
    result = search(_evolution(), make_space(limit=96), budget=30)
    assert all(sum(s.values()) <= 96 for s in result.samples)


def test_stops_when_the_space_is_exhausted(make_space, search) -> None:
    result = search(_evolution(population_size=4, sample_size=2, dedup_retries=20), make_space(n_layers=2),
                    budget=100)
    assert sorted(result.keys) == sorted(set(result.keys)) and len(result.keys) == 16


def test_without_dedup_samples_may_repeat(make_space, search) -> None:
    result = search(_evolution(dedup=False, population_size=4, sample_size=2), make_space(n_layers=2), budget=40)
    assert len(set(result.keys)) < len(result.keys)


def test_failed_models_do_not_join_the_population(make_space, search) -> None:
    def flaky(model) -> None:
        if model.layers[0].out_features == 8:
            raise RuntimeError("no")
        from nasflow import report_final_result

        report_final_result(sum(layer.out_features for layer in model.layers))

    strategy = _evolution()
    result = search(strategy, make_space(evaluate=flaky), budget=30, continue_on_failure=True)
    population = strategy.state_dict()["population"]
    assert population and all(entry[0]["w0"] != 0 for entry in population)  # index 0 is width 8
    assert any(m.status.value == "failed" for m in result.engine.list_models())


@pytest.mark.parametrize("kwargs, match", [
    ({"population_size": 5, "sample_size": 10}, "sample_size .* must not exceed population_size"),
    ({"mutation_prob": 1.5}, r"mutation_prob must be in \[0, 1\]"),
    ({"mutation_prob": -0.1}, "mutation_prob"),
    ({"population_size": 0}, "population_size must be at least 1"),
    ({"dedup_retries": -1}, "dedup_retries must be at least 0"),
    ({"sample_size": 2.5}, "sample_size must be an int"),
])
def test_bad_arguments_name_the_argument(kwargs, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        RegularizedEvolution(**kwargs)


def test_unknown_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="populaton_size"):
        RegularizedEvolution(populaton_size=10)  # type: ignore[call-arg]
