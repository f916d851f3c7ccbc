"""Does an experiment's per-trial cost stay flat as it grows, and its store small per trial?

10,000 trivial trials through ``NasExperiment`` with the sequential engine, the SQLite store and
``TPE`` (seed 0, ten random start-up trials, TPE's default ``max_history`` unless ``--max-history``
is given; ``none`` models every trial, as Optuna does), on a space of three
widths, an activation and two continuous evaluator arguments. The evaluator names a module-level
numpy table of 50,000 rows (4 MB, the usual "dataset defined in the script"), so this script being
``__main__``, the evaluator is pickled with the table: the store must hold it once, not per trial.

- ``store_bytes_per_trial``: the store's files (database + WAL) after the run, over the trials; the
  one-off setup (the space and the evaluator with its table) included.
- ``ms_per_trial_at_100`` / ``..._at_N``: the wall time of a window of 50 trials (model ends read
  from the store's history) around trial 100, and at the end (trials N-50 to N), over 50.
- The time spent inside the TPE sampler (its methods timed in place: Optuna's TPE and nasflow's
  window of the trials it models) in each window is reported as ``sampler_ms_...``, and the rest
  (nasflow's engine, store and strategy, Optuna's ask and tell) as ``rest_ms_...``: TPE scores every
  candidate against each trial it models, so with every trial modeled its cost grows with them.

Usage: python benchmarks/store_growth.py [--trials 10000] [--max-history N|none]   (last line: JSON)
"""

from __future__ import annotations

import argparse
import bisect
import functools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from strategy_overhead import six_parameter_space  # the space of strategy_overhead.py
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import ExperimentStore, NasExperiment, NasExperimentConfig
from nasflow.strategy import TPE
from nasflow.strategy.tpe_sampler import CountedTPESampler

TABLE = np.random.default_rng(0).random((50_000, 10))  # 50k rows, 4 MB: named by the evaluator below
WINDOW = 50
SAMPLER_METHODS = ("infer_relative_search_space", "sample_relative", "sample_independent", "before_trial",
                   "after_trial")


def evaluate(model: nn.Module, lr: float, dropout: float) -> None:
    row = TABLE[model.layers[2].out_features % len(TABLE)]
    nasflow.report_final_result(float(row[0]) - (np.log10(lr) + 2.5) ** 2 - 2 * (dropout - 0.2) ** 2)


def time_sampler() -> list[tuple[float, float]]:
    """Time every call of the TPE sampler's methods in place: (start, seconds) per call."""
    calls: list[tuple[float, float]] = []

    def timed(method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                calls.append((start, time.perf_counter() - start))
        return wrapper

    for name in SAMPLER_METHODS:
        setattr(CountedTPESampler, name, timed(getattr(CountedTPESampler, name)))
    return calls


def window(ends: list[float], calls: list[tuple[float, float]], first: int, last: int) -> dict[str, float]:
    """Per-trial wall time of trials ``first``..``last`` (their end times) and the sampler's share."""
    start, stop = ends[first - 1], ends[last]
    trials = last - first + 1
    starts = [c[0] for c in calls]
    inside = calls[bisect.bisect_left(starts, start):bisect.bisect_right(starts, stop)]
    total = (stop - start) / trials * 1000
    sampler = sum(seconds for _, seconds in inside) / trials * 1000
    return {"total": total, "sampler": sampler, "rest": total - sampler}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--max-history", help="TPE's max_history (default: TPE's), or 'none' for every trial")
    args = parser.parse_args()
    if args.trials < 100 + WINDOW:
        parser.error(f"--trials must be at least {100 + WINDOW}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    calls = time_sampler()
    evaluator = FunctionalEvaluator(evaluate, lr=nasflow.loguniform("lr", 1e-4, 1e-1),
                                    dropout=nasflow.uniform("dropout", 0.0, 0.5))
    with tempfile.TemporaryDirectory() as workdir:
        config = NasExperimentConfig("sequential", "simplified", max_trial_number=args.trials,
                                     experiment_working_directory=workdir, progress=False)
        options = {} if args.max_history is None else {
            "max_history": None if args.max_history == "none" else int(args.max_history)}
        strategy = TPE(seed=0, n_startup_trials=10, **options)
        experiment = NasExperiment(six_parameter_space(), evaluator, strategy, config, id="growth")
        began = time.perf_counter()
        experiment.run()
        wall = time.perf_counter() - began
        experiment._require_store().close()
        folder = Path(workdir) / "growth"
        store_bytes = sum(f.stat().st_size for f in folder.glob("nasflow.db*") if f.suffix != ".lock")
        with ExperimentStore.open(folder, read_only=True) as store:
            records = store.models(include_payload=False)
            setup_chars = len(store.get_meta("setup"))
        ends_wall = sorted(next(h.time for h in r.history if h.status == "trained") for r in records)
    assert len(ends_wall) == args.trials, f"{len(ends_wall)} of {args.trials} trials trained"
    # store times are time.time(); sampler calls perf_counter(): move the ends onto the sampler's clock
    offset = time.perf_counter() - time.time()
    ends = [t + offset for t in ends_wall]
    early = window(ends, calls, 100 - WINDOW // 2, 100 + WINDOW // 2 - 1)
    late = window(ends, calls, args.trials - WINDOW, args.trials - 1)
    n = args.trials
    print(f"{n} trials in {wall:.1f} s ({wall / n * 1000:.2f} ms per trial overall); store {store_bytes:,} bytes "
          f"(setup {setup_chars // 2:,} bytes, stored as {setup_chars:,} hex characters)")
    for name, part in (("around trial 100", early), (f"trials {n - WINDOW}-{n}", late)):
        print(f"{name}: {part['total']:.2f} ms per trial = TPE's sampler {part['sampler']:.2f} ms "
              f"+ the rest {part['rest']:.2f} ms")
    print(json.dumps({
        "store_bytes_per_trial": round(store_bytes / n),
        "ms_per_trial_at_100": round(early["total"], 2),
        f"ms_per_trial_at_{n}": round(late["total"], 2),
        "sampler_ms_at_100": round(early["sampler"], 2),
        f"sampler_ms_at_{n}": round(late["sampler"], 2),
        "rest_ms_at_100": round(early["rest"], 2),
        f"rest_ms_at_{n}": round(late["rest"], 2),
        "trials": n, "max_history": strategy.max_history, "wall_s": round(wall, 1),
    }))


if __name__ == "__main__":
    main()
