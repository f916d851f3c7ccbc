"""CGO benchmark: four models on a data-bound pipeline, trained independently and merged.

Each training batch is made by real CPU work (noisy signals filtered ``--work`` times by FFT, then
reduced to log spectral band features), which costs about as much as one model's training step.
Trained independently, every model pays for every batch; merged by CGO, the batch is made once
and fed to all four. With data cost ``d`` and model cost ``m`` per batch (measured here, in
process, as CPU time on one thread, before every round) the ideal speedup is ``N(d+m) / (d+Nm)``.

Both runs use the local training service at trial concurrency 1 with one thread per trial, and the
same worker setup (Lightning preloaded by the fork server, so no run pays its import per trial).
Independent and CGO runs alternate for ``--rounds`` rounds and the fastest run of each counts (as
``timeit`` does: on a machine shared with other work, the fastest run is the least disturbed).
Each trial also records the CPU time of its fit, a cross-check less sensitive to that load. The formula leaves
out costs CGO also pays once instead of N times (Lightning's per-batch loop, trial start-up), so
the measured speedup may exceed it slightly. Target: at least 80% of the ideal.

    /work/venv/bin/python benchmarks/cgo_speedup.py [--batches 100] [--work 6] [--rounds 3]

The last line is one JSON object: {"speedup": ..., "ideal_speedup": ..., "fraction_of_ideal": ...}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import time
import warnings
from typing import Any

import lightning
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

import nasflow
from nasflow.evaluator import Classification, DataLoader
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


class CpuClock(lightning.Callback):
    """Appends the CPU seconds a trial's fit took (data, training, validation) to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.started = 0.0

    def on_fit_start(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        self.started = time.process_time()

    def on_fit_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        with open(self.path, "a") as f:
            f.write(f"{time.process_time() - self.started}\n")


def evaluator(batches: int, work: int, clock: str) -> Classification:
    return Classification(train_dataloaders=DataLoader(SignalBatches(batches, work=work), batch_size=None),
                          val_dataloaders=DataLoader(SignalBatches(2, work=work, seed=1), batch_size=None),
                          num_classes=10, max_epochs=1, callbacks=[CpuClock(clock)], **QUIET)


def clock_total(path: str, since: int) -> tuple[float, int]:
    """CPU seconds recorded after the first ``since`` entries, and the new entry count."""
    with open(path) as f:
        values = [float(line) for line in f if line.strip()]
    return sum(values[since:]), len(values)


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


class Costs:
    """In-process CPU cost per batch of the data pipeline and of each model's training step.

    Measured again before every round; the least of each counts (the least disturbed by other load).
    """

    def __init__(self, space: GraphModelSpace, work: int, repeats: int) -> None:
        self.work, self.repeats = work, repeats
        self.batch = SignalBatches(1, work=work, seed=3)[0]
        self.built = [m.executable_model() for m in models(space)]
        self.data: list[float] = []
        self.per_model: list[list[float]] = []

    def measure(self) -> None:
        self.data.append(measure_data(self.work, self.repeats))
        self.per_model.append([measure_model(model, self.batch, self.repeats) for model in self.built])

    def result(self) -> tuple[float, list[float]]:
        return min(self.data), [min(column) for column in zip(*self.per_model, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=100, help="training batches per model (one epoch)")
    parser.add_argument("--work", type=int, default=6, help="FFT filter passes per batch (the data cost)")
    parser.add_argument("--repeats", type=int, default=20, help="batches / steps timed per measurement of d and m")
    parser.add_argument("--rounds", type=int, default=3, help="alternating independent + CGO runs")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers")
    torch.set_num_threads(1)  # as each trial runs
    work_dir = tempfile.mkdtemp(prefix="cgo-speedup-")
    clock = os.path.join(work_dir, "cpu.txt")
    open(clock, "w").close()

    space = GraphModelSpace.from_model(SpectrumNet(), evaluator(args.batches, args.work, clock))
    costs = Costs(space, args.work, args.repeats)
    costs.measure()

    service = LocalTrainingService(trial_concurrency=1, threads_per_trial=1, log_dir=work_dir,
                                   preload=("torch", "lightning", "nasflow", "nasflow.evaluator",
                                            "nasflow.evaluator.multi_model", "nasflow.space.graph"))
    rounds: list[tuple[float, float, float, float]] = []  # solo wall, merged wall, solo CPU, merged CPU
    try:
        solo_engine = TrainingServiceExecutionEngine(service, trial_concurrency=1)
        cgo_engine = CrossGraphOptimization(TrainingServiceExecutionEngine(service, trial_concurrency=1),
                                            max_concurrency_cgo=N_MODELS, batch_waiting_time=60)
        # Warm-up, and the fixed cost of a trial: a model trained on two batches.
        short = GraphModelSpace.from_model(SpectrumNet(), evaluator(2, args.work, clock))
        train(solo_engine, models(short)[:1])
        overhead = train(solo_engine, models(short)[:1])
        seen = clock_total(clock, 0)[1]
        for _ in range(args.rounds):
            costs.measure()
            solo_wall = train(solo_engine, models(space))
            solo_cpu, seen = clock_total(clock, seen)
            merged_models = models(space)
            merged_wall = train(cgo_engine, merged_models)
            merged_cpu, seen = clock_total(clock, seen)
            rounds.append((solo_wall, merged_wall, solo_cpu, merged_cpu))
            print(f"  independent {solo_wall:.2f} s, with CGO {merged_wall:.2f} s: {solo_wall / merged_wall:.2f}x "
                  f"(CPU in fit {solo_cpu:.2f} s vs {merged_cpu:.2f} s: {solo_cpu / merged_cpu:.2f}x)")
    finally:
        service.shutdown()
    accuracy = [model.metrics.final["val_acc"] for model in merged_models]  # type: ignore[index]

    d, per_model = costs.result()
    m = statistics.mean(per_model)
    print(f"data cost d = {d * 1e3:.2f} ms/batch; model cost m = {m * 1e3:.2f} ms/batch "
          f"(per model: {', '.join(f'{t * 1e3:.2f}' for t in per_model)}); CPU time on one thread, "
          f"least of {len(costs.data)} measurements")
    solo, merged = min(r[0] for r in rounds), min(r[1] for r in rounds)
    speedup = solo / merged
    cpu_speedup = min(r[2] for r in rounds) / min(r[3] for r in rounds)
    ideal = N_MODELS * (d + m) / (d + N_MODELS * m)
    print(f"one trial on 2 batches: {overhead:.2f} s (fixed per-trial cost, about)")
    print(f"{N_MODELS} models x {args.batches} batches, best of {args.rounds} rounds: independent {solo:.2f} s "
          f"({solo / N_MODELS / args.batches * 1e3:.1f} ms per model-batch), with CGO {merged:.2f} s "
          f"({merged / args.batches * 1e3:.1f} ms per batch); validation accuracy "
          f"{min(accuracy):.2f}-{max(accuracy):.2f}")
    print(f"speedup {speedup:.2f}x (CPU time in fit: {cpu_speedup:.2f}x), ideal N(d+m)/(d+Nm) = {ideal:.2f}x: "
          f"{speedup / ideal:.0%} of ideal (target 80%)")
    print(json.dumps({"speedup": round(speedup, 3), "ideal_speedup": round(ideal, 3),
                      "fraction_of_ideal": round(speedup / ideal, 3)}))


if __name__ == "__main__":
    main()
