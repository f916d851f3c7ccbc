"""Per-trial overhead of the sequential engine, through NasExperiment with the SQLite store on.

1,000 trivial trials (the evaluator reports one intermediate and one final metric and returns), so
all the time is the framework's: Random sampling with deduplication, freezing, building the (tiny,
four-layer) model, events, the recording middleware's store writes and the saved strategy progress.

    per-trial overhead = wall of exp.run() / N          (per_trial_ms; the target is under 1 ms)
    per-trial CPU      = process CPU time of exp.run() / N, every thread   (cpu_per_trial_ms)

Start-up (config, store creation, thread) is included, spread over the N trials; the evaluator's
report calls are included too, since in the sequential engine they are where events are recorded.
The CPU figure is the one to compare on a shared machine, where other work stretches the wall time.
``--breakdown`` also times the main parts. On 200 trivial trials NNI 3.0's sequential engine takes
1.7-2.0 ms per trial and Optuna's in-memory study 1.6-2.2 ms (issue 17).

Usage: python benchmarks/sequential_overhead.py [--trials 1000] [--breakdown]   (last line: JSON)
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import tempfile
import time
from collections.abc import Callable
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


def trivial(model: Any) -> None:
    nasflow.report_intermediate_result(0.5)
    nasflow.report_final_result(1.0)


def run(trials: int, directory: str) -> tuple[float, float, NasExperiment]:
    """Wall and CPU seconds of one experiment's run()."""
    config = NasExperimentConfig("sequential", "simplified", max_trial_number=trials,
                                 experiment_working_directory=directory, progress=False)
    experiment = NasExperiment(TrivialSpace(), FunctionalEvaluator(trivial), Random(seed=0), config)
    start, cpu = time.perf_counter(), time.process_time()
    assert experiment.run() is True
    return time.perf_counter() - start, time.process_time() - cpu, experiment


def time_parts() -> dict[str, float]:
    """Wrap the main parts of a trial with timers (seconds, summed); the work runs in the
    experiment's thread, where cProfile does not look."""
    from nasflow.experiment.experiment import NasExperiment as Experiment
    from nasflow.experiment.store import ExperimentStore as Store
    from nasflow.space.simplified import _Constructor

    totals: dict[str, float] = collections.defaultdict(float)
    parts = [(_Constructor, "build", "build the model (space constructor under the sample)"),
             (Random, "_draw", "Random: draw a new sample"),
             (Experiment, "_save_progress", "save strategy/engine state (incl. its store writes)")]
    parts += [(Store, name, f"store.{name}") for name in
              ("add_model", "set_status", "add_intermediate", "set_final", "save_strategy_state", "set_meta")]
    for owner, name, label in parts:
        original = getattr(owner, name)

        def timed(*args: Any, _original: Callable[..., Any] = original, _label: str = label, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                totals[_label] += time.perf_counter() - start

        setattr(owner, name, functools.wraps(original)(timed))
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--breakdown", action="store_true", help="also time the main parts of a trial")
    args = parser.parse_args()
    totals = time_parts() if args.breakdown else None
    with tempfile.TemporaryDirectory(prefix="nasflow-seqbench-") as directory:
        run(20, directory)  # warm-up: imports, first-use caches
        if totals is not None:
            totals.clear()
        wall, cpu, experiment = run(args.trials, directory)
        with ExperimentStore.open(f"{directory}/{experiment.id}", read_only=True) as store:
            trained = store.count_models("trained")
    assert trained == args.trials, f"only {trained} of {args.trials} trials trained"
    per_trial_ms, cpu_per_trial_ms = wall / args.trials * 1000, cpu / args.trials * 1000
    print(f"{args.trials} trivial trials, sequential engine, store on: wall {wall:.3f} s, CPU {cpu:.3f} s")
    for label, seconds in sorted((totals or {}).items(), key=lambda item: -item[1]):
        print(f"  {label:<55} {seconds / args.trials * 1000:7.3f} ms/trial")
    print(f"per-trial overhead: {per_trial_ms:.3f} ms, CPU {cpu_per_trial_ms:.3f} ms (target < 1 ms; NNI 3.0 "
          "1.7-2.0 ms)")
    print(json.dumps({"per_trial_ms": round(per_trial_ms, 3), "cpu_per_trial_ms": round(cpu_per_trial_ms, 3)}))


if __name__ == "__main__":
    main()
