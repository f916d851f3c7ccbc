"""Deduplication: a sample seen before is not run again ('invalid', 'replace', 'return')."""

from __future__ import annotations

import pytest

from nasflow.space import ModelStatus
from nasflow.strategy import Chain, Deduplication, FailureHandler, Random


def _script(sample):
    a, b, c = sample(8, 8, 8), sample(16, 8, 8), sample(32, 8, 8)
    return [a, b, a, c, b, a]


def test_invalid(make_space, search, scripted, sample) -> None:
    strategy = scripted(_script(sample))
    dedup = Deduplication("invalid")
    result = search(Chain(strategy, dedup), make_space(), budget=10)
    assert len(result.samples) == 3 and len(set(result.keys)) == 3
    trained, invalid = ModelStatus.Trained, ModelStatus.Invalid
    assert [m.status for m in strategy.submitted] == [trained, trained, invalid, trained, invalid, invalid]
    duplicates = [strategy.submitted[i] for i in (2, 4, 5)]
    assert {id(m) for m in dedup.list_models(invalid)} == {id(m) for m in duplicates}


def test_return_gives_the_earlier_result(make_space, search, scripted, sample) -> None:
    strategy = scripted(_script(sample))
    result = search(Chain(strategy, Deduplication("return")), make_space(), budget=10)
    assert len(result.samples) == 3
    submitted = strategy.submitted
    assert [m.status for m in submitted] == [ModelStatus.Trained] * 6
    assert [m.metric for m in submitted] == [24.0, 32.0, 24.0, 48.0, 32.0, 24.0]
    assert Deduplication("replay").action == "return"  # NNI's name


def test_replace_runs_an_unseen_sample_instead(make_space, search, scripted, sample) -> None:
    strategy = scripted(_script(sample))
    result = search(Chain(strategy, Deduplication("replace", seed=0)), make_space(), budget=10)
    assert len(result.samples) == 6 and len(set(result.keys)) == 6  # three replacements ran
    assert [m.status for m in strategy.submitted].count(ModelStatus.Invalid) == 3
    replacements = [m for m in result.ended if all(m is not s for s in strategy.submitted)]
    assert len(replacements) == 3 and all(m.status == ModelStatus.Trained for m in replacements)


def test_patience_stops_a_strategy_stuck_on_duplicates(make_space, search, scripted, sample) -> None:
    strategy = scripted([sample(8, 8, 8)] * 50)
    result = search(Chain(strategy, Deduplication("invalid", patience=5)), make_space(), budget=100)
    assert len(strategy.submitted) == 6 and len(result.samples) == 1


def test_random_without_dedup_never_repeats_behind_the_middleware(make_space, search) -> None:
    result = search(Chain(Random(seed=0, dedup=False), Deduplication("invalid")), make_space(n_layers=2), budget=16)
    assert len(result.samples) == 16 and len(set(result.keys)) == 16  # covered the space


def test_a_retry_is_not_a_duplicate(make_space, search, scripted, sample) -> None:
    attempts: dict[int, int] = {}

    def fails_once(model) -> None:
        width = model.layers[0].out_features
        attempts[width] = attempts.get(width, 0) + 1
        if attempts[width] == 1:
            raise RuntimeError("first attempt fails")
        import nasflow

        nasflow.report_final_result(float(width))

    strategy = scripted([sample(8, 8, 8), sample(16, 8, 8)])
    chain = Chain(strategy, FailureHandler(retry_patience=1), Deduplication("invalid"))
    search(chain, make_space(evaluate=fails_once), budget=10, continue_on_failure=True)
    assert [m.status for m in strategy.submitted] == [ModelStatus.Trained] * 2


def test_bad_action_is_clear() -> None:
    with pytest.raises(ValueError, match="action must be one of"):
        Deduplication("skip")  # type: ignore[arg-type]


def test_tpe_learns_from_replacements(make_space, search) -> None:
    import optuna

    from nasflow.strategy import TPE

    strategy = TPE(seed=0, n_startup_trials=3, dedup=False)
    result = search(Chain(strategy, Deduplication("replace", seed=0)), make_space(n_layers=2), budget=16)
    assert len(set(result.keys)) == len(result.keys)
    complete = [t for t in strategy.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == len(result.samples)  # replacements were added to the study too
