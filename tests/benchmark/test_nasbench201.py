"""NAS-Bench-201 offline: the table's known entries, the hub space mapped onto it, strategies on it."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from nasflow.benchmark import (
    BenchmarkModelSpace,
    NasBench201Benchmark,
    nb201_arch,
    nb201_best,
    query_nb201_trial_stats,
)
from nasflow.execution import SequentialExecutionEngine
from nasflow.hub import NasBench201
from nasflow.strategy import Random, RegularizedEvolution

# NAS-Bench-201's best cell on CIFAR-10 (train/valid split), by mean validation accuracy
BEST = {"0_1": "conv_3x3", "0_2": "conv_3x3", "1_2": "conv_3x3", "0_3": "skip_connect", "1_3": "conv_3x3",
        "2_3": "conv_1x1"}


@pytest.fixture(scope="module")
def space_labels() -> dict:
    return NasBench201(stem_out_channels=4, num_modules_per_stack=1).simplify()


def test_known_entries_of_the_table() -> None:
    arch, value = nb201_best("cifar10")
    assert arch == BEST and value == pytest.approx(91.6067, abs=1e-3)
    assert nb201_best("cifar100")[1] == pytest.approx(73.4933, abs=1e-3)
    assert nb201_best("imagenet16-120")[1] == pytest.approx(46.7333, abs=1e-3)
    runs = query_nb201_trial_stats(BEST, dataset="cifar10")
    assert [round(r["valid_acc"], 3) for r in runs] == [91.684, 91.72, 91.416]
    assert runs[0]["parameters"] == pytest.approx(1.073466)
    # a cell whose output is cut from its input (every edge into node 3 is 'none') learns nothing
    cut = {**BEST, "0_3": "none", "1_3": "none", "2_3": "none"}
    assert query_nb201_trial_stats(cut, dataset="cifar10", reduction="mean")[0]["valid_acc"] < 10
    # only the edge 0 -> 3 carries the signal: a single convolution, far from chance
    single = {edge: "none" for edge in BEST} | {"0_3": "conv_3x3"}
    assert query_nb201_trial_stats(single, dataset="cifar10", reduction="mean")[0]["valid_acc"] > 85
    # NAS-Bench-201's own operation names and scoped labels map to the same entry
    aliased = {f"cell/{k}": ("nor_" + v if v.startswith("conv") else v) for k, v in BEST.items()}
    assert nb201_arch(aliased) == BEST


def test_queries_refuse_what_the_table_lacks() -> None:
    with pytest.raises(ValueError, match="lacks \\['2_3'\\]"):
        nb201_arch({k: v for k, v in BEST.items() if k != "2_3"})
    with pytest.raises(ValueError, match="'sep_conv_3x3'"):
        nb201_arch({**BEST, "0_1": "sep_conv_3x3"})
    with pytest.raises(ValueError, match="no dataset 'mnist'"):
        query_nb201_trial_stats(BEST, dataset="mnist")
    with pytest.raises(TypeError, match="pass dataset='cifar10' by keyword"):
        NasBench201Benchmark("cifar10")
    with pytest.raises(ValueError, match="200-epoch results"):
        NasBench201Benchmark(num_epochs=12)
    with pytest.raises(ValueError, match="final results only"):
        NasBench201Benchmark(include_intermediates=True)
    with pytest.raises(ValueError, match="no metric 'test_acc'"):
        NasBench201Benchmark(metric="test_acc")


def test_hub_space_is_the_benchmark_space(space_labels: dict) -> None:
    assert list(space_labels) == [f"cell/{edge}" for edge in ("0_1", "0_2", "1_2", "0_3", "1_3", "2_3")]
    space = BenchmarkModelSpace.from_model(space_labels, NasBench201Benchmark(dataset="cifar10", reduction="mean"))
    model = space.freeze({f"cell/{k}": v for k, v in BEST.items()})
    with pytest.raises(TypeError, match="no torch module"):
        model.executable_model()
    noisy = NasBench201Benchmark(dataset="cifar10", seed=0)
    picks = {noisy.evaluate({f"cell/{k}": v for k, v in BEST.items()}) for _ in range(30)}
    assert sorted(round(p, 5) for p in picks) == [0.91416, 0.91684, 0.9172]  # one seed's run each time
    engine = SequentialExecutionEngine()
    engine.submit_models(model)
    assert model.metric == pytest.approx(0.916067, abs=1e-6)  # reduction='mean': the mean over seeds
    with pytest.raises(TypeError, match="evaluates samples, not modules"):
        noisy.evaluate(NasBench201(4, 1))


def test_other_spaces_are_refused_with_the_reason() -> None:
    from nasflow.mutable import Categorical

    with pytest.raises(ValueError, match="'width' is not one of the cell's edges"):
        BenchmarkModelSpace.from_model({"width": Categorical([1, 2], label="width")}, NasBench201Benchmark())
    ops = ["none", "conv_3x3", "max_pool_3x3"]
    with pytest.raises(ValueError, match="\\['max_pool_3x3'\\] that the benchmark did not train"):
        space = {f"c/{e}": Categorical(ops, label=f"c/{e}") for e in BEST}
        BenchmarkModelSpace.from_model(space, NasBench201Benchmark())
    with pytest.raises(TypeError, match="needs a BenchmarkEvaluator"):
        BenchmarkModelSpace.from_model(NasBench201(4, 1), None)


def test_a_thousand_evaluations_in_seconds_and_in_an_experiment(space_labels: dict, tmp_path: Path) -> None:
    space = BenchmarkModelSpace.from_model(space_labels, NasBench201Benchmark(dataset="cifar10", seed=0))
    engine = SequentialExecutionEngine(max_model_count=1000)
    strategy = Random(seed=0)
    strategy.initialize(space, engine)
    strategy.run()
    models = list(engine.list_models())
    assert len(models) == 1000 and all(0.09 < m.metric < 0.92 for m in models)

    from nasflow.experiment import NasExperiment, NasExperimentConfig

    config = NasExperimentConfig("sequential", "simplified", max_trial_number=30,
                                 experiment_working_directory=str(tmp_path), progress=False)
    evolution = RegularizedEvolution(population_size=10, sample_size=3, seed=0)
    exp = NasExperiment(BenchmarkModelSpace.from_model(space_labels, NasBench201Benchmark(dataset="cifar10", seed=0)),
                        None, evolution, config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 30 models leave 20 mutations for a population of 10: no warning
        assert exp.run() is True
    best = exp.export_top_models(1)[0]
    assert set(best) == set(space_labels)
