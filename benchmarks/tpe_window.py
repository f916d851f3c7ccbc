"""Does modeling a window of trials (``TPE``'s default ``max_history``) cost TPE search quality?

TPE's sampler, with and without the window, maximizes the six-dimensional Hartmann function (a
standard multimodal test function, maximum 3.32237 on the unit cube) through Optuna's ask/tell,
seed by seed. Up to ``max_history`` trials both draw the same points; past them the windowed sampler
models the ``max_history`` most recent trials and the 25 best. Reported: the median over seeds of the simple regret
(3.32237 minus the best value found) after 200, 500, 1,000 and all trials, and the median time per
trial over the last 100 trials.

Usage: python benchmarks/tpe_window.py [--trials 2000] [--seeds 8] [--max-history N]   (last line: JSON)
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import time

import numpy as np
import optuna

from nasflow.strategy import TPE
from nasflow.strategy.tpe_sampler import CountedTPESampler, TrialWindow

A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
              [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                     [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
OPTIMUM = 3.32237


def hartmann6(x: list[float]) -> float:
    return float(ALPHA @ np.exp(-np.sum(A * (np.asarray(x) - P) ** 2, axis=1)))


def search(trials: int, seed: int, window: int | None) -> tuple[list[float], float]:
    """The values found in order, and the seconds per trial over the last 100."""
    sampler = CountedTPESampler(seed=seed, window=None if window is None else TrialWindow(window),
                                n_startup_trials=10)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    values, started = [], 0.0
    for n in range(trials):
        if n == trials - 100:
            started = time.perf_counter()
        trial = study.ask()
        value = hartmann6([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(6)])
        values.append(value)
        study.tell(trial, value)
    return values, (time.perf_counter() - started) / 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--max-history", type=int, default=inspect.signature(TPE).parameters["max_history"].default)
    args = parser.parse_args()
    if args.trials < 1000:
        parser.error("--trials must be at least 1000")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    checkpoints = tuple(sorted({200, 500, 1000, args.trials}))
    result: dict[str, dict[str, float]] = {}
    for name, window in ((f"window_{args.max_history}", args.max_history), ("all_trials", None)):
        regrets: dict[int, list[float]] = {k: [] for k in checkpoints}
        times = []
        for seed in range(args.seeds):
            values, seconds = search(args.trials, seed, window)
            times.append(seconds)
            for k in checkpoints:
                regrets[k].append(OPTIMUM - max(values[:k]))
            print(f"{name} seed {seed}: regret {[round(regrets[k][-1], 4) for k in checkpoints]} "
                  f"at {list(checkpoints)} trials; {seconds * 1000:.1f} ms per trial at the end", flush=True)
        result[name] = {**{f"regret_at_{k}": round(statistics.median(regrets[k]), 4) for k in checkpoints},
                        "ms_per_trial_at_end": round(statistics.median(times) * 1000, 2)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
