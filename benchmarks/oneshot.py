"""One-shot search time next to multi-trial evaluation of the same space, on scikit-learn's digits.

The space (36 MLP architectures: activation, depth 1-3, dropout, a skip input) is searched by each
one-shot strategy (DARTS, GumbelDARTS, Proxyless, RandomOneShot, ENAS), each in a fresh process
through ``NasExperiment(space, Classification(...), strategy)``, training the supernet for as many
epochs as one candidate gets in the multi-trial run. The baseline evaluates all 36 architectures
the way multi-trial NAS does (``GridSearch``, the default local training service, one trial at a
time: the same compute as the one-shot process), each trained from scratch with the same evaluator.

Reported per strategy: the search's wall time (``search_s``: the experiment's run(); ``process_s``:
the whole fresh process with its imports), the exported architecture, its validation accuracy with
the weights inherited from the supernet, and its accuracy retrained from scratch as multi-trial
trains (so one-shot exports and multi-trial results compare directly). For the baseline: wall time,
the best and median accuracy over the space.

Usage: python benchmarks/oneshot.py [--epochs 5] [--strategies DARTS ENAS ...]   (last line: JSON)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

STRATEGIES = ("DARTS", "GumbelDARTS", "Proxyless", "RandomOneShot", "ENAS")


def build() -> tuple[Any, Any]:
    """The space class and the evaluator factory (imported lazily: the parent process stays light)."""
    import torch
    from sklearn.datasets import load_digits
    from torch import nn
    from torch.utils.data import TensorDataset

    from nasflow.evaluator import Classification, DataLoader
    from nasflow.nn import InputChoice, LayerChoice, ModelSpace, Repeat

    class DigitsSpace(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Linear(64, 64)
            self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid()}, label="act")
            self.blocks = Repeat(lambda i: nn.Sequential(nn.Linear(64, 64), nn.ReLU()), depth=(1, 3), label="depth")
            self.drop = LayerChoice({"p0": nn.Dropout(0.0), "p50": nn.Dropout(0.5)}, label="dropout")
            self.skip = InputChoice(2, 1, label="skip")
            self.head = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.act(self.stem(x))
            return self.head(self.drop(self.skip([h, self.blocks(h)])))

    def evaluator(epochs: int) -> Classification:
        x, y = load_digits(return_X_y=True)
        features, labels = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
        order = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))
        train, val = order[:1400], order[1400:]
        return Classification(train_dataloaders=DataLoader(TensorDataset(features[train], labels[train]),
                                                           batch_size=64, shuffle=True),
                              val_dataloaders=DataLoader(TensorDataset(features[val], labels[val]), batch_size=256),
                              learning_rate=3e-3, max_epochs=epochs, logger=False, enable_progress_bar=False,
                              enable_checkpointing=False, enable_model_summary=False)

    return DigitsSpace, evaluator


def measure_oneshot(name: str, epochs: int, directory: str) -> dict[str, Any]:
    """In a fresh process: one search, then the export retrained from scratch like a multi-trial candidate."""
    import torch

    import nasflow.strategy
    from nasflow.evaluator import evaluate_model
    from nasflow.experiment import NasExperiment, NasExperimentConfig

    space_class, evaluator = build()
    torch.manual_seed(0)
    config = NasExperimentConfig(experiment_working_directory=directory, progress=False)
    experiment = NasExperiment(space_class(), evaluator(epochs), getattr(nasflow.strategy, name)(), config)
    start = time.perf_counter()
    assert experiment.run() is True
    search = time.perf_counter() - start
    sample = experiment.export_top_models(1)[0]
    inherited = experiment.list_models()[0].metric
    torch.manual_seed(0)
    retrained = evaluate_model(space_class().freeze(sample), evaluator(epochs)).value
    return {"search_s": search, "exported": sample, "inherited_acc": inherited, "retrained_acc": retrained}


def measure_multi_trial(epochs: int, directory: str) -> dict[str, Any]:
    import torch

    from nasflow.experiment import NasExperiment, NasExperimentConfig
    from nasflow.strategy import GridSearch

    space_class, evaluator = build()
    torch.manual_seed(0)
    config = NasExperimentConfig(trial_concurrency=1, experiment_working_directory=directory, progress=False)
    experiment = NasExperiment(space_class(), evaluator(epochs), GridSearch(), config)
    start = time.perf_counter()
    assert experiment.run() is True
    wall = time.perf_counter() - start
    scores = [m.metric for m in experiment.list_models() if m.metric is not None]
    best = experiment.export_top_models(1)[0]
    return {"wall_s": wall, "architectures": len(scores), "best": best, "best_acc": max(scores),
            "median_acc": statistics.median(scores)}


def in_fresh_process(kind: str, epochs: int, directory: str) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--measure", kind, "--epochs", str(epochs), "--dir", directory],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child: one measurement, JSON on the last line
        if args.measure == "multi_trial":
            print(json.dumps(measure_multi_trial(args.epochs, args.dir)))
        else:
            print(json.dumps(measure_oneshot(args.measure, args.epochs, args.dir)))
        return
    with tempfile.TemporaryDirectory() as directory:
        oneshot = {}
        for name in args.strategies:
            oneshot[name] = in_fresh_process(name, args.epochs, directory)
            print(f"{name}: {oneshot[name]}", flush=True)
        multi = in_fresh_process("multi_trial", args.epochs, directory)
        print(f"multi-trial: {multi}", flush=True)
    speedup = {name: {"run": multi["wall_s"] / r["search_s"], "process": multi["process_s"] / r["process_s"]}
               for name, r in oneshot.items()}  # experiment.run() alone, and the whole fresh process
    print(json.dumps({"epochs": args.epochs, "oneshot": oneshot, "multi_trial": multi, "speedup": speedup}))


if __name__ == "__main__":
    main()
