"""Per-trial overhead of the sequential engine, through NasExperiment with the SQLite store on.

1,000 trivial trials (the evaluator reports one intermediate and one final metric and returns), so
nearly all the time is the framework's: Random sampling with deduplication, freezing, building the
(tiny) model, events, the recording middleware's store writes and the strategy's saved progress.

    per-trial overhead = (wall of exp.run() - time inside the evaluator) / N

The evaluator's own time is measured and subtracted (it is microseconds); start-up (config, store
creation) is included, spread over the N trials. NNI 3.0 does about 5 ms per trial here.

Usage: python benchmarks/sequential_overhead.py [--trials 1000] [--profile]   (last line: JSON)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from typing import Any

from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import ExperimentStore, NasExperiment, NasExperimentConfig
from nasflow.nn import ModelSpace, MutableLinear
from nasflow.strategy import Random


class TrivialSpace(ModelSpace):
    """Four searched widths: 10,000 samples, so 1,000 deduplicated draws rarely collide."""

    def __init__(self) -> None:
        super().__init__()
        widths = [nasflow.choice(f"width{i}", list(range(1, 11))) for i in range(4)]
        pairs = zip([2, *widths[:-1]], widths, strict=True)
        self.layers = nn.Sequential(*(MutableLinear(n_in, n_out) for n_in, n_out in pairs))

    def forward(self, x: Any) -> Any:
        return self.layers(x)


EVALUATOR_SECONDS = [0.0]


def trivial(model: Any) -> None:
    start = time.perf_counter()
    nasflow.report_intermediate_result(0.5)
    nasflow.report_final_result(1.0)
    EVALUATOR_SECONDS[0] += time.perf_counter() - start


def run(trials: int, directory: str) -> tuple[float, NasExperiment]:
    config = NasExperimentConfig("sequential", "simplified", max_trial_number=trials,
                                 experiment_working_directory=directory, progress=False)
    experiment = NasExperiment(TrivialSpace(), FunctionalEvaluator(trivial), Random(seed=0), config)
    EVALUATOR_SECONDS[0] = 0.0
    start = time.perf_counter()
    assert experiment.run() is True
    return time.perf_counter() - start, experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="print the top functions by cumulative time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nasflow-seqbench-") as directory:
        run(20, directory)  # warm-up: imports, first-use caches
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        wall, experiment = run(args.trials, directory)
        if profiler is not None:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        with ExperimentStore.open(f"{directory}/{experiment.id}", read_only=True) as store:
            trained = store.count_models("trained")
    assert trained == args.trials, f"only {trained} of {args.trials} trials trained"
    overhead = wall - EVALUATOR_SECONDS[0]
    per_trial_ms = overhead / args.trials * 1000
    print(f"{args.trials} trivial trials, sequential engine, store on: wall {wall:.3f} s, "
          f"inside the evaluator {EVALUATOR_SECONDS[0] * 1000:.1f} ms")
    print(f"per-trial overhead: {per_trial_ms:.3f} ms (target < 2 ms; NNI 3.0 about 5 ms)")
    print(json.dumps({"per_trial_ms": round(per_trial_ms, 3)}))


if __name__ == "__main__":
    main()
