"""Per-trial overhead of the training-service engine on the local training service, fresh vs reused workers.

1. The README example's real path (``examples/digits_search.py``: its model space, evaluator and
   scikit-learn digits data, 20 trials, two at a time), run as a user runs it: a new Python process
   per run, so the fork server starts cold and every fresh trial is a new worker process. Each
   mode runs ``--repeats`` times, interleaved (fresh, reused, fresh, ...) so both see the same load
   on a shared machine. ``fresh_s`` / ``reused_s``: median seconds of ``experiment.run()`` as the
   example prints it (fork server start-up included, the script's own imports not);
   ``fresh_over_reused``: the median of the pairs' ratios. The whole process's wall time and the
   CPU time of all its processes (less sensitive to other load than wall time) are printed too.

2. Trivial trials (N = 10 and 200, concurrency 2) through ``TrainingServiceExecutionEngine`` with
   ``LocalTrainingService`` in both modes, submitted the way a strategy does (a new model whenever a
   worker is idle). A trial builds its (tiny) model in the worker and reports one final metric, so
   its ideal duration is 0 and everything measured is overhead: payload pickling, fork (fresh
   mode) or hand-over (reuse mode), the model's rebuild, event round trips, exit and reaping.

       per-trial overhead = wall * concurrency / N

   i.e. how long one of the ``concurrency`` slots is busy per trial, measured after a warm-up batch
   (so the fork server's start-up, which imports torch, is excluded). ``ten_trials_wall_s`` is 10
   fresh-mode trials counted from constructing the engine and its service, start-up included.

Usage: python benchmarks/trial_overhead.py [--trials 20] [--repeats 3]   (last line: one JSON object)
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.execution import TrainingServiceExecutionEngine
from nasflow.experiment.engines import WORKER_PRELOAD
from nasflow.nn import ModelSpace, MutableLinear
from nasflow.space import ExecutableModelSpace, ModelStatus, SimplifiedModelSpace
from nasflow.training_service import LocalTrainingService

CONCURRENCY = 2


class TrivialSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.fc = MutableLinear(2, nasflow.choice("width", [1, 2, 3, 4]))

    def forward(self, x: Any) -> Any:
        return self.fc(x)


def trivial(model: nn.Module) -> None:
    nasflow.report_final_result(0.0)


SPACE = SimplifiedModelSpace.from_model(TrivialSpace(), FunctionalEvaluator(trivial))


def make_engine(reuse: bool, log_dir: str) -> TrainingServiceExecutionEngine:
    service = LocalTrainingService(trial_concurrency=CONCURRENCY, reuse_mode=reuse, log_dir=log_dir,
                                   preload=WORKER_PRELOAD)  # as NasExperiment builds it
    return TrainingServiceExecutionEngine(service, trial_concurrency=CONCURRENCY)


def run_trials(engine: TrainingServiceExecutionEngine, count: int) -> float:
    """Submit ``count`` models as workers free up, wait for all; the wall time."""
    start = time.perf_counter()
    models: list[ExecutableModelSpace] = []
    while len(models) < count:
        if engine.idle_worker_available():
            model = SPACE.freeze({"width": 1 + len(models) % 4})
            engine.submit_models(model)
            models.append(model)
        else:
            engine.wait_models()
    engine.wait_models(*models, wait_all=True)
    wall = time.perf_counter() - start
    failed = [(m.model_id, m.status) for m in models if m.status != ModelStatus.Trained]
    if failed:
        raise RuntimeError(f"trials did not train: {failed}")
    return wall


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_search.py"


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_example(trials: int, reuse: bool, directory: str) -> tuple[float, float, float]:
    """Seconds of ``experiment.run()``, of the whole process, and CPU seconds of the process and
    every process under it (the fork server and the workers, all reaped), for one run of the example."""
    command = [sys.executable, str(EXAMPLE), "--trials", str(trials), "--concurrency", str(CONCURRENCY),
               "--dir", directory, *(["--reuse"] if reuse else [])]
    cpu, start = cpu_of_children(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - start, cpu_of_children() - cpu
    found = re.search(rf"{trials} models, {trials} trained in ([0-9.]+) s", done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return float(found.group(1)), wall, cpu


def real_path(trials: int, repeats: int) -> dict[str, float]:
    runs: dict[str, list[tuple[float, float, float]]] = {"fresh": [], "reused": []}
    with tempfile.TemporaryDirectory(prefix="nasflow-trialbench-") as directory:
        for _ in range(repeats):
            for mode in runs:
                runs[mode].append(run_example(trials, mode == "reused", directory))
    for mode, results in runs.items():
        experiment, process, cpu = (statistics.median(r[i] for r in results) for i in (0, 1, 2))
        print(f"README example, {trials} trials, {mode} workers: experiment {experiment:.2f} s "
              f"(runs {[round(r[0], 2) for r in results]}), whole process {process:.2f} s, CPU {cpu:.2f} s")
    ratios = [f[0] / r[0] for f, r in zip(runs["fresh"], runs["reused"], strict=True)]
    print(f"fresh / reused per pair: {[round(x, 3) for x in ratios]} (target < 1.1)")
    return {"fresh_s": round(statistics.median(r[0] for r in runs["fresh"]), 3),
            "reused_s": round(statistics.median(r[0] for r in runs["reused"]), 3),
            "fresh_over_reused": round(statistics.median(ratios), 3)}


def trivial_trials() -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="nasflow-trialbench-") as log_dir:
        start = time.perf_counter()
        engine = make_engine(False, log_dir)
        run_trials(engine, 10)
        ten = time.perf_counter() - start
        engine.shutdown()
        print(f"fresh, 10 trials from engine construction (fork server start-up included): {ten:.3f} s")
        for reuse in (False, True):
            mode = "reuse" if reuse else "fresh"
            engine = make_engine(reuse, log_dir)
            try:
                run_trials(engine, 2 * CONCURRENCY)  # warm-up: the fork server has imported torch
                for count in (10, 200):
                    wall = run_trials(engine, count)
                    per_trial_ms = wall * CONCURRENCY / count * 1000
                    print(f"{mode}, N={count}, concurrency {CONCURRENCY}: wall {wall:.3f} s, "
                          f"overhead {per_trial_ms:.2f} ms per trial per slot")
                    if count == 200:
                        figures[f"{mode}_per_trial_ms"] = round(per_trial_ms, 2)
            finally:
                engine.shutdown()
    figures["ten_trials_wall_s"] = round(ten, 3)
    print("targets: fresh < 50 ms, reuse < 10 ms per trial; 10 trials end to end < 3 s")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per run of the README example")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the README example per mode")
    args = parser.parse_args()
    figures = real_path(args.trials, args.repeats)
    figures.update(trivial_trials())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
