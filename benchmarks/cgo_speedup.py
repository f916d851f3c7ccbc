"""CGO benchmark: four models on a data-bound pipeline, trained independently and merged.

Each training batch is made by real CPU work (noisy signals filtered ``--work`` times by FFT, then
reduced to log spectral band features), which costs about as much as one model's training step.
Trained independently, every model pays for every batch; merged by CGO, the batch is made once
and fed to all four. With data cost ``d`` and model cost ``m`` per batch (both measured here, in
process, on one thread) the ideal speedup is ``N(d+m) / (d+Nm)``.

Both runs use the local training service at trial concurrency 1 with one thread per trial, and the
same worker setup (Lightning preloaded by the fork server, so no run pays its import per trial).
Target: the measured speedup is at least 80% of the ideal.

    /work/venv/bin/python benchmarks/cgo_speedup.py [--batches 150] [--work 6]

The last line is one JSON object: {"speedup": ..., "ideal_speedup": ..., "fraction_of_ideal": ...}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

import nasflow
from nasflow.evaluator import Classification, DataLoader, FunctionalEvaluator
from nasflow.execution import ExecutionEngine, TrainingServiceExecutionEngine
from nasflow.execution.cgo import CrossGraphOptimization
from nasflow.nn import LayerChoice, ModelSpace, MutableLinear
from nasflow.space import ExecutableModelSpace, ModelStatus
from nasflow.space.graph import GraphModelSpace
from nasflow.training_service import LocalTrainingService

N_MODELS = 4
FEATURES = 120
QUIET: dict[str, Any] = {
    "logger": False, "enable_progress_bar": False, "enable_checkpointing": False, "enable_model_summary": False,
    "num_sanity_val_steps": 0,
}


class SignalBatches(Dataset):
    """Item ``i`` is a whole batch ``(features, labels)``, computed from scratch on every access.

    Signals of ``length`` samples are band-pass filtered ``work`` times in the frequency domain
    (rfft, mask, irfft, soft clipping); the features are log energies of the first ``FEATURES``
    frequencies and the label is the loudest of 10 bands. Deterministic per index.
    """

    def __init__(self, n_batches: int, batch_size: int = 64, length: int = 4096, work: int = 6, seed: int = 0) -> None:
        self.n_batches, self.batch_size, self.length, self.work, self.seed = n_batches, batch_size, length, work, seed
        self.nasflow_data_key = ("signal-batches", n_batches, batch_size, length, work, seed)
        frequencies = torch.arange(length // 2 + 1, dtype=torch.float32)
        self.mask = torch.exp(-((frequencies - 40.0) / 60.0) ** 2) + 0.05

    def __len__(self) -> int:
        return self.n_batches

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        tones = torch.randint(1, FEATURES, (self.batch_size, 1), generator=generator).float()
        time_axis = torch.arange(self.length, dtype=torch.float32) * (2 * torch.pi / self.length)
        x = torch.sin(tones * time_axis) + torch.randn(self.batch_size, self.length, generator=generator)
        for _ in range(self.work):
            x = torch.tanh(torch.fft.irfft(torch.fft.rfft(x) * self.mask, n=self.length))
        energy = torch.log1p(torch.fft.rfft(x).abs()[:, 1:FEATURES + 1] ** 2)
        labels = energy.reshape(self.batch_size, 10, FEATURES // 10).sum(-1).argmax(-1)
        return (energy - energy.mean()) / (energy.std() + 1e-6), labels


class SpectrumNet(ModelSpace):
    """Three-layer MLP; hidden width and activation searched (four models)."""

    def __init__(self) -> None:
        super().__init__()
        hidden = nasflow.choice("hidden", [768, 1024])
        self.fc1 = MutableLinear(FEATURES, hidden)
        self.act = LayerChoice([nn.ReLU(), nn.GELU()], label="act")
        self.fc2 = MutableLinear(hidden, hidden)
        self.fc3 = MutableLinear(hidden, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


def evaluator(batches: int, work: int) -> Classification:
    return Classification(train_dataloaders=DataLoader(SignalBatches(batches, work=work), batch_size=None),
                          val_dataloaders=DataLoader(SignalBatches(2, work=work, seed=1), batch_size=None),
                          num_classes=10, max_epochs=1, **QUIET)


def models(space: GraphModelSpace) -> list[ExecutableModelSpace]:
    samples = itertools.product([768, 1024], [0, 1])
    return [space.freeze({"hidden": hidden, "act": act}) for hidden, act in samples]


def measure_data(work: int, repeats: int) -> float:
    """CPU seconds to produce one batch through the loader."""
    loader = DataLoader(SignalBatches(repeats + 1, work=work, seed=7), batch_size=None)
    iterator = iter(loader)
    next(iterator)  # warm up
    start = time.process_time()
    for _ in range(repeats):
        next(iterator)
    return (time.process_time() - start) / repeats


def measure_model(model: nn.Module, batch: tuple[Tensor, Tensor], repeats: int) -> float:
    """CPU seconds of one training step (forward, loss, backward, Adam step) on one batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    x, y = batch

    def step() -> None:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.process_time()
    for _ in range(repeats):
        step()
    return (time.process_time() - start) / repeats


def nothing(model: nn.Module) -> None:
    """Warm-up trial: starts the worker pool before anything is timed."""
    nasflow.report_final_result(0.0)


def train(engine: ExecutionEngine, batch: list[ExecutableModelSpace]) -> float:
    """Wall seconds from submitting ``batch`` until every model has ended."""
    start = time.perf_counter()
    engine.submit_models(*batch)
    engine.wait_models(*batch, wait_all=True)
    wall = time.perf_counter() - start
    bad = [(m.model_id, m.status.value) for m in batch if m.status != ModelStatus.Trained]
    if bad:
        raise RuntimeError(f"Models did not train: {bad}")
    return wall


def costs(space: GraphModelSpace, work: int, repeats: int, rounds: int) -> tuple[float, list[float]]:
    """Median over ``rounds`` of the data cost per batch and of each model's cost per batch."""
    sample_batch = SignalBatches(1, work=work, seed=3)[0]
    built = [m.executable_model() for m in models(space)]
    data, per_model = [], []
    for _ in range(rounds):
        data.append(measure_data(work, repeats))
        per_model.append([measure_model(model, sample_batch, repeats) for model in built])
    return statistics.median(data), [statistics.median(column) for column in zip(*per_model, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=150, help="training batches per model (one epoch)")
    parser.add_argument("--work", type=int, default=6, help="FFT filter passes per batch (the data cost)")
    parser.add_argument("--repeats", type=int, default=20, help="batches / steps timed per measurement of d and m")
    parser.add_argument("--rounds", type=int, default=2, help="independent + CGO runs (the fastest of each counts)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers")
    torch.set_num_threads(1)  # as each trial runs

    space = GraphModelSpace.from_model(SpectrumNet(), evaluator(args.batches, args.work))
    d, per_model = costs(space, args.work, args.repeats, rounds=3)
    m = statistics.mean(per_model)
    print(f"data cost d = {d * 1e3:.2f} ms/batch; model cost m = {m * 1e3:.2f} ms/batch "
          f"(per model: {', '.join(f'{t * 1e3:.2f}' for t in per_model)}); CPU time, one thread")

    service = LocalTrainingService(trial_concurrency=1, threads_per_trial=1, log_dir=tempfile.mkdtemp(),
                                   preload=("torch", "lightning", "nasflow", "nasflow.evaluator",
                                            "nasflow.evaluator.multi_model", "nasflow.space.graph"))
    solo_walls, merged_walls = [], []
    try:
        solo_engine = TrainingServiceExecutionEngine(service, trial_concurrency=1)
        cgo_engine = CrossGraphOptimization(TrainingServiceExecutionEngine(service, trial_concurrency=1),
                                            max_concurrency_cgo=N_MODELS, batch_waiting_time=60)
        warm_up = GraphModelSpace.from_model(SpectrumNet(), FunctionalEvaluator(nothing)).freeze(
            {"hidden": 768, "act": 0})
        train(solo_engine, [warm_up])
        for _ in range(args.rounds):
            solo_walls.append(train(solo_engine, models(space)))
            merged_models = models(space)
            merged_walls.append(train(cgo_engine, merged_models))
            print(f"  independent {solo_walls[-1]:.2f} s, with CGO {merged_walls[-1]:.2f} s")
    finally:
        service.shutdown()
    accuracy = [model.metrics.final["val_acc"] for model in merged_models]  # type: ignore[index]

    solo, merged = min(solo_walls), min(merged_walls)
    speedup = solo / merged
    ideal = N_MODELS * (d + m) / (d + N_MODELS * m)
    print(f"{N_MODELS} models x {args.batches} batches: independent {solo:.2f} s "
          f"({solo / N_MODELS / args.batches * 1e3:.1f} ms per model-batch), with CGO {merged:.2f} s "
          f"({merged / args.batches * 1e3:.1f} ms per batch); validation accuracy "
          f"{min(accuracy):.2f}-{max(accuracy):.2f}")
    print(f"speedup {speedup:.2f}x, ideal N(d+m)/(d+Nm) = {ideal:.2f}x: {speedup / ideal:.0%} of ideal (target 80%)")
    print(json.dumps({"speedup": round(speedup, 3), "ideal_speedup": round(ideal, 3),
                      "fraction_of_ideal": round(speedup / ideal, 3)}))


if __name__ == "__main__":
    main()
