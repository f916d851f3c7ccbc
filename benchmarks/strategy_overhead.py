"""Per-trial cost of nasflow's TPE against Optuna's own ``TPESampler``, asking and telling the same space.

Both search one space of six parameters (three layer widths and an activation in the model space,
a log-uniform learning rate and a uniform dropout rate as evaluator arguments) for 1,000 trials,
seed 0, ten random start-up trials, every other sampler setting Optuna's default; each trial's
metric is the same function of its parameters, known at once, so all the time is the strategy's.

- optuna: ``study.ask()``, six ``trial.suggest_*`` calls, ``study.tell(trial, value)``.
- nasflow: ``TPE`` driven the way an engine drives it (``TPE.run()`` submits a frozen model,
  the engine reports the model's metric and its end, TPE tells Optuna), with an engine that
  answers at once instead of building and training the model, so the figure is TPE's own:
  Optuna's sampler plus nasflow's mapping of samples to parameters, constraint checks,
  deduplication, freezing and its state records. ``tpe_over_optuna`` compares like with like:
  ``TPE(max_history=None)`` models every trial, as Optuna's sampler does; nasflow's default
  (``max_history=150``: the 150 most recent trials and the 25 best) is reported beside it as
  ``default_tpe_over_optuna``, faster past 150 trials because it models fewer.

Each side runs in a fresh process (imports excluded from its time), the three interleaved
``--repeats`` times; the figures are medians and ``tpe_over_optuna`` the median of the pairs' ratios.

Usage: python benchmarks/strategy_overhead.py [--trials 1000] [--repeats 3]   (last line: one JSON object)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

WIDTHS = [16, 32, 64, 128, 256]
ACTIVATIONS = ["relu", "tanh", "gelu"]
SEED, STARTUP = 0, 10


def objective(w0: int, w1: int, w2: int, act: str, lr: float, dropout: float) -> float:
    """A smooth-enough landscape with its optimum inside the space."""
    return (-abs(math.log2(w0) - 6) - abs(math.log2(w1) - 5) - 0.5 * abs(math.log2(w2) - 7)
            - (math.log10(lr) + 2.5) ** 2 - 2 * (dropout - 0.2) ** 2 + (0.5 if act == "gelu" else 0.0))


def run_optuna(trials: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    sampler = optuna.samplers.TPESampler(seed=SEED, n_startup_trials=STARTUP)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(trials):
        trial = study.ask()
        widths = [trial.suggest_categorical(f"w{i}", WIDTHS) for i in range(3)]
        act = trial.suggest_categorical("act", ACTIVATIONS)
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        study.tell(trial, objective(*widths, act, lr, dropout))
    return time.perf_counter() - start


def six_parameter_space() -> Any:
    """The model space of three widths and an activation (the evaluator adds lr and dropout)."""
    from torch import nn

    import nasflow
    from nasflow.nn import LayerChoice, ModelSpace, MutableLinear

    class Space(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            widths = [nasflow.choice(f"w{i}", WIDTHS) for i in range(3)]
            self.layers = nn.Sequential(MutableLinear(8, widths[0]), MutableLinear(widths[0], widths[1]),
                                        MutableLinear(widths[1], widths[2]))
            self.act = LayerChoice({name: nn.Identity() for name in ACTIVATIONS}, label="act")

    return Space()


def run_nasflow(trials: int, **tpe_options: Any) -> float:
    import optuna

    import nasflow
    from nasflow.evaluator import FunctionalEvaluator
    from nasflow.execution import ExecutionEngine
    from nasflow.execution.event import FinalMetricEvent, TrainingEndEvent, TrainingStartEvent
    from nasflow.space import ModelStatus, SimplifiedModelSpace
    from nasflow.strategy import TPE

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    class InstantEngine(ExecutionEngine):
        """Reports each submitted model's metric and end at once (the model is never built)."""

        def __init__(self, budget: int) -> None:
            super().__init__()
            self.budget, self.models = budget, []

        def submit_models(self, *models: Any) -> None:
            for model in models:
                self.assign_model_id(model)
                self.models.append(model)
                s = model.sample
                self.dispatch_model_event(TrainingStartEvent(model, {}))
                value = objective(s["w0"], s["w1"], s["w2"], s["act"], s["lr"], s["dropout"])
                self.dispatch_model_event(FinalMetricEvent(model, value))
                self.dispatch_model_event(TrainingEndEvent(model, ModelStatus.Trained, None))

        def list_models(self, status: Any = None) -> list[Any]:
            return [m for m in self.models if status is None or m.status == status]

        def idle_worker_available(self) -> bool:
            return True

        def budget_available(self) -> bool:
            return len(self.models) < self.budget

        def wait_models(self, *models: Any, timeout: float | None = None, wait_all: bool = False) -> None:
            return None

    def evaluate(model: Any, lr: float, dropout: float) -> None:  # never called: the engine answers
        raise AssertionError

    evaluator = FunctionalEvaluator(evaluate, lr=nasflow.loguniform("lr", 1e-4, 1e-1),
                                    dropout=nasflow.uniform("dropout", 0.0, 0.5))
    start = time.perf_counter()
    space = SimplifiedModelSpace.from_model(six_parameter_space(), evaluator)
    engine = InstantEngine(trials)
    strategy = TPE(seed=SEED, n_startup_trials=STARTUP, **tpe_options)
    strategy.initialize(space, engine)
    strategy.run()
    wall = time.perf_counter() - start
    assert len(engine.models) == trials and all(m.status == ModelStatus.Trained for m in engine.models)
    return wall


SIDES: dict[str, Callable[[int], float]] = {
    "optuna": run_optuna,
    "nasflow": lambda trials: run_nasflow(trials, max_history=None),  # every trial, as Optuna's sampler
    "nasflow_default": run_nasflow,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one run, in a child
    args = parser.parse_args()
    if args.side:
        print(json.dumps({"seconds": SIDES[args.side](args.trials)}))
        return
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    for _ in range(args.repeats):
        for side in times:
            done = subprocess.run([sys.executable, __file__, "--side", side, "--trials", str(args.trials)],
                                  check=True, capture_output=True, text=True)
            times[side].append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])

    def ratio(side: str) -> float:
        return statistics.median(n / o for n, o in zip(times[side], times["optuna"], strict=True))

    for side, runs in times.items():
        print(f"{side}: {args.trials} trials, median {statistics.median(runs):.3f} s "
              f"({statistics.median(runs) / args.trials * 1000:.2f} ms per trial; runs {[round(t, 3) for t in runs]})")
    print(json.dumps({"tpe_over_optuna": round(ratio("nasflow"), 3),
                      "default_tpe_over_optuna": round(ratio("nasflow_default"), 3),
                      **{f"{side}_s": round(statistics.median(runs), 3) for side, runs in times.items()}}))

if __name__ == "__main__":
    main()
