"""A real search, end to end: an MLP space on scikit-learn's digits, trials in local workers.

    python examples/digits_search.py [--trials 20] [--concurrency 2] [--reuse]

Every trial trains a candidate for a few epochs and reports its validation accuracy; the store
(SQLite) keeps everything, so `nasflow show <id>` and `nasflow export <id>` work afterwards.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from sklearn.datasets import load_digits
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import NasExperiment, NasExperimentConfig
from nasflow.nn import LayerChoice, ModelSpace, MutableDropout, MutableLinear, Repeat
from nasflow.strategy import RegularizedEvolution


class DigitsMLP(ModelSpace):
    """Width, depth, activation and dropout are searched."""

    def __init__(self, n_features: int = 64, n_classes: int = 10) -> None:
        super().__init__()
        width = nasflow.choice("width", [16, 32, 64, 128])
        self.stem = MutableLinear(n_features, width)
        self.blocks = Repeat(
            lambda index: nn.Sequential(
                MutableLinear(width, width),
                LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "gelu": nn.GELU()}, label=f"act{index}"),
            ),
            depth=(1, 3), label="depth",
        )
        self.dropout = MutableDropout(nasflow.choice("dropout", [0.0, 0.1, 0.3]))
        self.head = MutableLinear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.blocks(torch.relu(self.stem(x)))))


def digits_split(seed: int = 0) -> tuple[torch.Tensor, ...]:
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    split = int(0.8 * len(x))
    return x[order[:split]], y[order[:split]], x[order[split:]], y[order[split:]]


def train_and_evaluate(model: nn.Module, epochs: int = 8, learning_rate: float = 3e-3) -> None:
    """Train with Adam; report validation accuracy after every epoch and at the end."""
    torch.manual_seed(0)
    x_train, y_train, x_val, y_val = digits_split()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    accuracy = 0.0
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x_train)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
        nasflow.report_intermediate_result(accuracy)
    nasflow.report_final_result(accuracy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--dir", default=None, help="experiment working directory")
    parser.add_argument("--reuse", action="store_true",
                        help="run trials one after another in long-lived workers instead of a fresh process each")
    args = parser.parse_args()

    config = NasExperimentConfig(max_trial_number=args.trials, trial_concurrency=args.concurrency,
                                 reuse_mode=args.reuse)
    if args.dir:
        config.experiment_working_directory = args.dir
    strategy = RegularizedEvolution(population_size=8, sample_size=4, seed=0)
    experiment = NasExperiment(DigitsMLP(), FunctionalEvaluator(train_and_evaluate), strategy, config)
    start = time.perf_counter()
    experiment.run()
    seconds = time.perf_counter() - start

    models = experiment.list_models()
    trained = [m for m in models if m.metric is not None]
    print(f"\nExperiment {experiment.id}: {len(models)} models, {len(trained)} trained in {seconds:.2f} s")
    trained.sort(key=lambda m: -m.metric)
    print("Top models (validation accuracy, sample):")
    for model in trained[:3]:
        print(f"  {model.metric:.4f}  {json.dumps(model.sample)}")
    assert experiment.export_top_models(3) == [m.sample for m in trained[:3]]
    best = experiment.export_top_models(1, formatter="instance")[0]
    print("Best model:\n" + str(best))
    print(f"\nInspect it: nasflow show {experiment.id}    export: nasflow export {experiment.id} --top-k 3")


if __name__ == "__main__":
    main()
