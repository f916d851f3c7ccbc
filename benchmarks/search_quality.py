"""Search quality on NAS-Bench-201: simple regret of every multi-trial strategy, beside Optuna's samplers.

Each strategy searches the hub's ``NasBench201`` space against the offline table (CIFAR-10 by
default). An evaluation reports one recorded training run of the architecture, picked at random
among its seeds, as retraining would (noisy, as NNI's benchmark evaluator is). After 25, 50 and 100
evaluations the strategy's pick is the model with the best reported accuracy, and its simple regret
is the best mean validation accuracy in the table minus the pick's mean validation accuracy (in
percentage points; 0 is the optimum). Medians over 10 seeds.

Optuna's ``TPESampler`` and ``RandomSampler`` run on the same six categorical decisions with the same
noisy evaluations, through Optuna's own loop, as a baseline outside nasflow. Multi-fidelity strategies
are not listed: the offline table has final (200-epoch) results only (see benchmarks/multi_fidelity.py).

Usage: python benchmarks/search_quality.py [--dataset cifar10] [--seeds 10]   (last line: one JSON object)
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from nasflow.benchmark import BenchmarkModelSpace, NasBench201Benchmark, nb201_best, query_nb201_trial_stats
from nasflow.execution import SequentialExecutionEngine
from nasflow.hub import NasBench201
from nasflow.strategy import TPE, GridSearch, PolicyBasedRL, Random, RegularizedEvolution, Strategy

CHECKPOINTS = (25, 50, 100)
MODEL_BASED = ("TPE", "RegularizedEvolution(20,5)", "PolicyBasedRL")

STRATEGIES: dict[str, Callable[[int], Strategy]] = {
    "Random": lambda seed: Random(seed=seed),
    "GridSearch(shuffle)": lambda seed: GridSearch(shuffle=True, seed=seed),
    "RegularizedEvolution(NNI defaults: 100,25)": lambda seed: RegularizedEvolution(seed=seed),
    "RegularizedEvolution(20,5)": lambda seed: RegularizedEvolution(population_size=20, sample_size=5,
                                                                   mutation_prob=0.1, seed=seed),
    "TPE": lambda seed: TPE(seed=seed),
    "PolicyBasedRL": lambda seed: PolicyBasedRL(seed=seed),
}


def mean_accuracy(sample: dict[str, Any], dataset: str) -> float:
    return query_nb201_trial_stats(sample, dataset=dataset, reduction="mean")[0]["valid_acc"]


def regrets(picks: list[tuple[dict[str, Any], float]], dataset: str, optimum: float) -> list[float]:
    """Regret of the best-reported model among the first k evaluations, for each checkpoint k."""
    out = []
    for k in CHECKPOINTS:
        sample, _ = max(picks[:k], key=lambda entry: entry[1])
        out.append(optimum - mean_accuracy(sample, dataset))
    return out


def run_strategy(make: Callable[[int], Strategy], seed: int, dataset: str, space: dict) -> list[tuple[dict, float]]:
    evaluator = NasBench201Benchmark(dataset=dataset, seed=seed)
    engine = SequentialExecutionEngine(max_model_count=max(CHECKPOINTS))
    strategy = make(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RegularizedEvolution's budget warning: the point of its row
        strategy.initialize(BenchmarkModelSpace.from_model(space, evaluator), engine)
        strategy.run()
    return [(dict(m.sample), m.metric) for m in engine.list_models() if m.metric is not None]


def run_optuna(sampler_name: str, seed: int, dataset: str, space: dict) -> list[tuple[dict, float]]:
    import optuna

    sampler = (optuna.samplers.TPESampler(seed=seed) if sampler_name == "TPESampler"
               else optuna.samplers.RandomSampler(seed=seed))
    evaluator = NasBench201Benchmark(dataset=dataset, seed=seed)
    picks: list[tuple[dict, float]] = []

    def objective(trial: optuna.Trial) -> float:
        sample = {label: trial.suggest_categorical(label, list(m.values)) for label, m in space.items()}
        value = evaluator.evaluate(sample)
        picks.append((sample, value))
        return value

    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=max(CHECKPOINTS))
    return picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100", "imagenet16-120"])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    logging.getLogger("nasflow").setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    space = NasBench201().simplify()
    _, optimum = nb201_best(args.dataset)
    runners: dict[str, Callable[[int], list[tuple[dict, float]]]] = {
        name: (lambda seed, make=make: run_strategy(make, seed, args.dataset, space))
        for name, make in STRATEGIES.items()
    }
    runners["optuna.TPESampler"] = lambda seed: run_optuna("TPESampler", seed, args.dataset, space)
    runners["optuna.RandomSampler"] = lambda seed: run_optuna("RandomSampler", seed, args.dataset, space)

    table: dict[str, dict[str, float]] = {}
    print(f"NAS-Bench-201 {args.dataset}: best mean validation accuracy {optimum:.3f}%; "
          f"median simple regret (points) over {args.seeds} seeds")
    print(f"{'strategy':46s}" + "".join(f"{'@' + str(k):>9s}" for k in CHECKPOINTS) + f"{'seconds':>9s}")
    for name, runner in runners.items():
        started = time.perf_counter()
        per_seed = [regrets(runner(seed), args.dataset, optimum) for seed in range(args.seeds)]
        seconds = time.perf_counter() - started
        medians = [statistics.median(r[i] for r in per_seed) for i in range(len(CHECKPOINTS))]
        table[name] = {str(k): round(v, 4) for k, v in zip(CHECKPOINTS, medians, strict=True)}
        table[name]["seconds"] = round(seconds, 2)
        print(f"{name:46s}" + "".join(f"{v:9.3f}" for v in medians) + f"{seconds:9.1f}", flush=True)

    random_at_100 = table["Random"]["100"]
    below = {name: table[name]["100"] < random_at_100 for name in MODEL_BASED}
    print("model-based strategies below Random's regret at 100 evaluations: "
          + ", ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in below.items()))
    print(json.dumps({"benchmark": "search_quality", "dataset": args.dataset, "seeds": args.seeds,
                      "optimum_valid_acc": round(optimum, 4), "checkpoints": list(CHECKPOINTS),
                      "median_regret": table, "model_based_below_random_at_100": below}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
