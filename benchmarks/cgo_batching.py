"""Operator batching: N same-architecture models on digits, as separate trials, merged, and batched.

N models share one architecture (an MLP, or a small CNN) and differ in their initial weights and
learning rates: the evaluator searches ``learning_rate=nasflow.choice("lr", [...])``. Three ways to train them on the
local training service, one trial at a time, one thread per trial, fresh workers (the defaults):

- ``separate``: N trials, one per model (what runs without CGO);
- ``dedup``: one merged trial, each batch made once, every model's forward pass on its own
  (``CrossGraphOptimization(batching=False)``);
- ``batched``: one merged trial whose models run one vectorized forward pass (``torch.func.vmap``
  over stacked parameters; each model keeps its own optimizer and learning rate),
  ``CrossGraphOptimization(batching="always")`` (by default CGO batches only on GPUs).

Every run uses the same evaluator settings (Classification, two epochs, no logger or
checkpoints). The modes alternate for ``--rounds`` rounds and the least time of each counts (on a
shared machine the fastest run is the least disturbed). The last line is one JSON object: per
architecture and N, the three wall times in seconds:
``{"mlp": {"4": {"separate_s": ..., "dedup_s": ..., "batched_s": ...}, ...}, "cnn": ...}``.

    .venv/bin/python benchmarks/cgo_batching.py [--sizes 4 8 16] [--epochs 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import warnings
from pathlib import Path

import torch
from cgo_speedup import train  # the same submit-and-wait, timed
from torch import Tensor, nn
from torch.utils.data import TensorDataset

import nasflow
from nasflow.evaluator import Classification, DataLoader
from nasflow.execution import TrainingServiceExecutionEngine
from nasflow.execution.cgo import CrossGraphOptimization
from nasflow.experiment.engines import preload_for
from nasflow.nn import ModelSpace
from nasflow.space import ExecutableModelSpace
from nasflow.space.graph import GraphModelSpace
from nasflow.training_service import LocalTrainingService


class MLP(ModelSpace):
    """64 -> 128 -> 128 -> 10 with ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(64, 128), nn.Linear(128, 128), nn.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class SmallCNN(ModelSpace):
    """Two 3x3 convolutions on the 8x8 image, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Unflatten(1, (1, 8, 8))
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.pool, self.flat = nn.MaxPool2d(2), nn.Flatten()
        self.head = nn.Linear(32 * 16, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.flat(self.pool(torch.relu(self.conv2(torch.relu(self.conv1(self.image(x))))))))


def digits() -> tuple[TensorDataset, TensorDataset]:
    """The Quick start example's split of scikit-learn's digits (80% training)."""
    path = Path(__file__).resolve().parents[1] / "examples" / "digits_search.py"
    spec = importlib.util.spec_from_file_location("digits_search", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    x_train, y_train, x_val, y_val = example.digits_split()
    return TensorDataset(x_train, y_train), TensorDataset(x_val, y_val)


def learning_rates(n: int) -> list[float]:
    """``n`` learning rates spread from 3e-4 to 3e-2."""
    return [3e-4 * 100 ** (index / max(1, n - 1)) for index in range(n)]


def models(space: GraphModelSpace, n: int) -> list[ExecutableModelSpace]:
    """``n`` models of the space's one architecture, one per searched learning rate."""
    return [space.freeze({"lr": lr}) for lr in learning_rates(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16], help="models per run")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; the least time counts")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers")
    train_set, val_set = digits()
    options = {"train_dataloaders": DataLoader(train_set, batch_size=64),
               "val_dataloaders": DataLoader(val_set, batch_size=400), "max_epochs": args.epochs,
               "num_classes": 10, "logger": False, "enable_checkpointing": False}
    work_dir = Path(tempfile.mkdtemp(prefix="cgo-batching-"))
    service = LocalTrainingService(trial_concurrency=1, threads_per_trial=1, log_dir=work_dir,
                                   preload=preload_for(Classification(**options)))
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for name, net in (("mlp", MLP), ("cnn", SmallCNN)):
            for n in args.sizes:
                searched = Classification(learning_rate=nasflow.choice("lr", learning_rates(n)), **options)
                space = GraphModelSpace.from_model(net(), searched)
                if n == args.sizes[0]:  # warm-up: the fork server's first trial
                    train(TrainingServiceExecutionEngine(service, trial_concurrency=1), models(space, 1))
                engines = {
                    "separate": TrainingServiceExecutionEngine(service, trial_concurrency=1),
                    "dedup": CrossGraphOptimization(TrainingServiceExecutionEngine(service, trial_concurrency=1),
                                                    max_concurrency_cgo=n, batch_waiting_time=60, batching=False),
                    "batched": CrossGraphOptimization(TrainingServiceExecutionEngine(service, trial_concurrency=1),
                                                      max_concurrency_cgo=n, batch_waiting_time=60,
                                                      batching="always"),  # batched on CPU too
                }
                walls: dict[str, float] = {}
                accuracy: dict[str, float] = {}
                for _ in range(args.rounds):  # alternating modes; the least time of each counts
                    for mode, engine in engines.items():
                        trained = models(space, n)
                        wall = round(train(engine, trained), 3)
                        walls[f"{mode}_s"] = min(wall, walls.get(f"{mode}_s", wall))
                        accuracy[mode] = max(m.metrics.reported_final["val_acc"] for m in trained)
                results.setdefault(name, {})[str(n)] = walls
                print(f"{name} N={n}: separate {walls['separate_s']:.2f} s, dedup {walls['dedup_s']:.2f} s "
                      f"({walls['separate_s'] / walls['dedup_s']:.2f}x), batched {walls['batched_s']:.2f} s "
                      f"({walls['separate_s'] / walls['batched_s']:.2f}x); best validation accuracy "
                      + ", ".join(f"{mode} {value:.3f}" for mode, value in accuracy.items()))
    finally:
        service.shutdown()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
