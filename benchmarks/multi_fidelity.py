"""Multi-fidelity search against full-budget random search, on real training (scikit-learn's digits).

Every strategy gets the same wall time (``--duration`` seconds, enforced by the experiment's
``max_experiment_duration``) on the local training service (``--concurrency`` worker processes),
the path a user takes. A trial trains an MLP candidate (width, depth, activations, dropout, and the
evaluator's learning rate and batch size are searched) for ``nasflow.trial_budget()`` epochs and
reports its validation accuracy per epoch and at the end, with the test accuracy beside it.
Workers are reused between trials, for every strategy alike. Random search trains every model for
the full budget (``--max-epochs``); SuccessiveHalving, Hyperband and ASHA start many models on
``--min-epochs`` and promote the best third rung by rung (eta = 3) up to the full budget.

Figures per strategy, medians over ``--seeds`` seeds: best validation accuracy found (the pick), that
model's test accuracy, models trained, epochs trained, and the seconds each took to first reach the
best validation accuracy random search reached in the whole budget (same accuracy in less time).

Usage: python benchmarks/multi_fidelity.py [--duration 40] [--seeds 3] [--concurrency 2]
       (last line: one JSON object)
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import ExperimentStore, NasExperiment, NasExperimentConfig
from nasflow.nn import LayerChoice, ModelSpace, MutableDropout, MutableLinear, Repeat
from nasflow.strategy import ASHA, Hyperband, Random, SuccessiveHalving
from nasflow.training_service import LocalTrainingService


class DigitsMLP(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        width = nasflow.choice("width", [8, 16, 32, 64, 128])
        self.stem = MutableLinear(64, width)
        self.blocks = Repeat(lambda i: nn.Sequential(
            MutableLinear(width, width),
            LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid()}, label=f"act{i}"),
        ), depth=(1, 3), label="depth")
        self.dropout = MutableDropout(nasflow.choice("dropout", [0.0, 0.2, 0.5]))
        self.head = MutableLinear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.blocks(torch.relu(self.stem(x)))))


def train_digits(model: nn.Module, learning_rate: float, batch_size: int, max_epochs: int) -> None:
    """Adam for ``trial_budget()`` epochs (the full ``max_epochs`` when no strategy sets a budget)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, val, test = order[:1078], order[1078:1438], order[1438:]
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    epochs = int(nasflow.trial_budget(default=max_epochs))

    def accuracy(idx: torch.Tensor) -> float:
        model.eval()
        with torch.no_grad():
            return float((model(x[idx]).argmax(1) == y[idx]).float().mean())

    val_acc = 0.0
    for _ in range(epochs):
        model.train()
        shuffled = train[torch.randperm(len(train))]
        for start in range(0, len(train), batch_size):
            batch = shuffled[start:start + batch_size]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
        val_acc = accuracy(val)
        nasflow.report_intermediate_result(val_acc)
    nasflow.report_final_result({"default": val_acc, "test": accuracy(test)})


def evaluator(max_epochs: int) -> FunctionalEvaluator:
    return FunctionalEvaluator(train_digits, max_epochs=max_epochs,
                               learning_rate=nasflow.choice("lr", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]),
                               batch_size=nasflow.choice("batch_size", [32, 128]))


def run(name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    low = args.min_epochs
    strategy = {
        "Random (full budget)": lambda: Random(seed=seed),
        "SuccessiveHalving": lambda: SuccessiveHalving(low, args.max_epochs, 3, seed=seed),
        "Hyperband": lambda: Hyperband(low, args.max_epochs, 3, seed=seed),
        "ASHA": lambda: ASHA(low, args.max_epochs, 3, seed=seed),
    }[name]()
    with tempfile.TemporaryDirectory() as folder:
        # workers are reused between trials (and preload scikit-learn): a trial's cost is its training
        service = LocalTrainingService(trial_concurrency=args.concurrency, reuse_mode=True,
                                       preload=("torch", "nasflow", "sklearn.datasets"))
        config = NasExperimentConfig("ts", "simplified", service, max_experiment_duration=args.duration,
                                     trial_concurrency=args.concurrency, experiment_working_directory=folder,
                                     progress=False)
        experiment = NasExperiment(DigitsMLP(), evaluator(args.max_epochs), strategy, config)
        started = time.time()
        experiment.run()
        with ExperimentStore.open(f"{folder}/{experiment.id}", read_only=True) as store:
            records = [r for r in store.models(include_payload=False) if r.metrics.final is not None]
    finals = [(r.metrics.final["default"], r.metrics.final["test"], r.updated - started, len(r.metrics.intermediates))
              for r in records]
    best = max(finals, key=lambda f: f[0])
    return {"best_val": best[0], "test_of_best": best[1], "models": len(finals),
            "epochs": sum(f[3] for f in finals), "reached": sorted((f[2], f[0]) for f in finals)}


def first_reach(reached: list[tuple[float, float]], target: float) -> float | None:
    for seconds, value in reached:
        if value >= target:
            return seconds
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=81)
    parser.add_argument("--min-epochs", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("nasflow").setLevel(logging.ERROR)

    names = ["Random (full budget)", "SuccessiveHalving", "Hyperband", "ASHA"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for seed in range(args.seeds):  # seed-major, so a busy spell of the machine hits every strategy alike
        for name in names:
            runs[name].append(run(name, seed, args))
    targets = [r["best_val"] for r in runs["Random (full budget)"]]
    table: dict[str, dict[str, Any]] = {}
    print(f"digits MLP search, {args.duration:.0f} s each on {args.concurrency} local workers, "
          f"{args.max_epochs} epochs full budget, medians over {args.seeds} seeds")
    print(f"{'strategy':22s}{'best val':>10s}{'its test':>10s}{'models':>8s}{'epochs':>8s}{'s to random best':>18s}")
    for name in names:
        rows = runs[name]
        reach = [first_reach(r["reached"], t) for r, t in zip(rows, targets, strict=True)]
        reached = [s for s in reach if s is not None]
        table[name] = {
            "best_val": round(statistics.median(r["best_val"] for r in rows), 4),
            "test_of_best": round(statistics.median(r["test_of_best"] for r in rows), 4),
            "models": statistics.median(r["models"] for r in rows),
            "epochs": statistics.median(r["epochs"] for r in rows),
            "seconds_to_random_best": round(statistics.median(reached), 1) if len(reached) == len(rows) else None,
            "reached_random_best": f"{len(reached)}/{len(rows)}",
            "best_val_per_seed": [round(r["best_val"], 4) for r in rows],
        }
        row = table[name]
        to_best = "-" if row["seconds_to_random_best"] is None else f"{row['seconds_to_random_best']:.1f}"
        print(f"{name:22s}{row['best_val']:10.4f}{row['test_of_best']:10.4f}{row['models']:8.0f}{row['epochs']:8.0f}"
              f"{to_best:>18s}  ({row['reached_random_best']} seeds reached)")
    print(json.dumps({"benchmark": "multi_fidelity", "duration_s": args.duration, "seeds": args.seeds,
                      "concurrency": args.concurrency, "max_epochs": args.max_epochs, "results": table}))


if __name__ == "__main__":
    main()
