"""CGO benchmark: four models on a data-bound pipeline, trained independently and merged.

Each training batch is made by real CPU work (noisy signals filtered ``--work`` times by FFT, then
reduced to log spectral band features), which costs about as much as one model's training step.
Trained independently, every model pays for every batch; merged by CGO, the batch is made once
and fed to all four. With data cost ``d`` and model cost ``m`` per batch (both measured here, in
process, on one thread) the ideal speedup is ``N(d+m) / (d+Nm)``.

Both runs use the local training service at trial concurrency 1 with one thread per trial, and the
same worker setup (Lightning preloaded by the fork server, so no run pays its import per trial).
Target: the measured speedup is at least 80% of the ideal.

    /work/venv/bin/python benchmarks/cgo_speedup.py [--batches 240] [--work 2]

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

    def __init__(self, n_batches: int, batch_size: int = 64, length: int = 4096, work: int = 2, seed: int = 0) -> None:
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
        hidden = nasflow.choice("hidden", [512, 768])
        self.fc1 = MutableLinear(FEATURES, hidden)
        self.act = LayerChoice([nn.ReLU(), nn.GELU()], label="act")
        self.fc2 = MutableLinear(hidden, hidden)
        self.fc3 = MutableLinear(hidden, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


def evaluator(batches: int, work: int) -> Classification:
    return Classification(train_dataloaders=DataLoader(SignalBatches(batches, work=work), batch_size=None),
                          val_dataloaders=DataLoader(SignalBatches(4, work=work, seed=1), batch_size=None),
                          num_classes=10, max_epochs=1, **QUIET)


def models(space: GraphModelSpace) -> list[ExecutableModelSpace]:
    samples = itertools.product([512, 768], [0, 1])
    return [space.freeze({"hidden": hidden, "act": act}) for hidden, act in samples]


def measure_data(batches: int, work: int, repeats: int) -> float:
    """Seconds to produce one batch through the loader."""
    loader = DataLoader(SignalBatches(batches, work=work, seed=7), batch_size=None)
    iterator = iter(loader)
    next(iterator)  # warm up
    start = time.perf_counter()
    for _ in range(repeats):
        next(iterator)
    return (time.perf_counter() - start) / repeats


def measure_model(model: nn.Module, batch: tuple[Tensor, Tensor], repeats: int) -> float:
    """Seconds of one training step (forward, loss, backward, Adam step) on one batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    x, y = batch

    def step() -> None:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=240, help="training batches per model (one epoch)")
    parser.add_argument("--work", type=int, default=2, help="FFT filter passes per batch (the data cost)")
    parser.add_argument("--repeats", type=int, default=30, help="batches / steps timed for d and m")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers")
    torch.set_num_threads(1)  # as each trial runs

    space = GraphModelSpace.from_model(SpectrumNet(), evaluator(args.batches, args.work))
    d = measure_data(args.batches, args.work, args.repeats)
    sample_batch = SignalBatches(1, work=args.work, seed=3)[0]
    per_model = [measure_model(m.executable_model(), sample_batch, args.repeats) for m in models(space)]
    m = statistics.mean(per_model)
    print(f"data cost d = {d * 1e3:.2f} ms/batch; model cost m = {m * 1e3:.2f} ms/batch "
          f"(per model: {', '.join(f'{t * 1e3:.2f}' for t in per_model)})")

    service = LocalTrainingService(trial_concurrency=1, threads_per_trial=1, log_dir=tempfile.mkdtemp(),
                                   preload=("torch", "lightning", "nasflow", "nasflow.evaluator",
                                            "nasflow.evaluator.multi_model", "nasflow.space.graph"))
    try:
        solo_engine = TrainingServiceExecutionEngine(service, trial_concurrency=1)
        warm_up = GraphModelSpace.from_model(SpectrumNet(), FunctionalEvaluator(nothing)).freeze(
            {"hidden": 512, "act": 0})
        train(solo_engine, [warm_up])
        solo = train(solo_engine, models(space))
        cgo_engine = CrossGraphOptimization(TrainingServiceExecutionEngine(service, trial_concurrency=1),
                                            max_concurrency_cgo=N_MODELS, batch_waiting_time=60)
        merged_models = models(space)
        merged = train(cgo_engine, merged_models)
    finally:
        service.shutdown()
    accuracy = [m.metrics.final["val_acc"] for m in merged_models]  # type: ignore[index]

    speedup = solo / merged
    ideal = N_MODELS * (d + m) / (d + N_MODELS * m)
    print(f"{N_MODELS} models x {args.batches} batches: independent {solo:.2f} s, with CGO {merged:.2f} s "
          f"(validation accuracy {min(accuracy):.2f}-{max(accuracy):.2f})")
    print(f"speedup {speedup:.2f}x, ideal {ideal:.2f}x, {speedup / ideal:.0%} of ideal (target 80%)")
    print(json.dumps({"speedup": round(speedup, 3), "ideal_speedup": round(ideal, 3),
                      "fraction_of_ideal": round(speedup / ideal, 3)}))


if __name__ == "__main__":
    main()
