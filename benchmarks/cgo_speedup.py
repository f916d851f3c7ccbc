"""CGO benchmark: four models on a data-bound pipeline, as separate trials and merged into one.

The baseline is what a user runs instead of CGO: the same four models as four separate trials of
the same evaluator, on the same local training service, at the same total concurrency (one trial
at a time, one thread per trial, fresh worker per trial as by default, Lightning preloaded as an
experiment preloads it). CGO trains the four as one merged trial: each batch is made once.

Each training batch is made by real CPU work (noisy signals filtered ``--work`` times by FFT, then
reduced to log spectral band features). With ``B`` batches, a model's separate trial takes
``T_i = s_i + B(d + m_i)`` and the merged trial at least ``s + B(d + N m)``, so the speedup is at
most ``N(s + B(d+m)) / (s + B(d + Nm))`` (``s``, ``m``: means over the models), where

- ``m_i`` is model ``i``'s own per-batch compute: its forward pass, its backward pass (both timed
  by hooks during a fit) and its optimizer update (timed alone);
- ``d`` is everything else a batch costs (the data pipeline, the loss, Lightning's batch loop and
  step machinery), counted as paid once however many models train on the batch: per-model work
  in there is counted as shared, which can only raise the bound;
- ``s_i`` is the rest of its separate trial (start-up, building, warm-up, validation, teardown):
  ``T_i - B(d + m_i)``.

``m_i`` and ``d`` are medians over the steps of a fit with the same evaluator, in this process on
one thread as trials run (medians are robust to other load). Each of
``--rounds`` rounds measures everything close together and computes its own speedup, bound and
fraction; the figures printed are the medians over rounds (load on a shared machine drifts between
rounds more than within one). Target: ``fraction_of_ideal`` (measured speedup / bound) between
0.8 and 1.

    .venv/bin/python benchmarks/cgo_speedup.py [--batches 60] [--work 6] [--rounds 3]

The last line is one JSON object: {"speedup", "ideal_speedup", "fraction_of_ideal", "s", "d", "m"}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

import nasflow
from nasflow.evaluator import Classification, DataLoader, evaluate_model
from nasflow.execution import ExecutionEngine, TrainingServiceExecutionEngine
from nasflow.execution.cgo import CrossGraphOptimization
from nasflow.experiment.engines import preload_for
from nasflow.nn import LayerChoice, ModelSpace, MutableLinear
from nasflow.space import ExecutableModelSpace, ModelStatus
from nasflow.space.graph import GraphModelSpace
from nasflow.training_service import LocalTrainingService

N_MODELS = 4
FEATURES = 120
SETTINGS: dict[str, Any] = {"max_epochs": 1, "num_classes": 10, "logger": False, "enable_checkpointing": False,
                            "enable_progress_bar": False}


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


class StepClock:
    """Times each training step of ``module``: its forward pass (pre and post hooks) and backward
    pass (from the gradient of its output to the last parameter gradient)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.events: list[tuple[str, float]] = []
        now = time.perf_counter
        self.handles = [
            module.register_forward_pre_hook(lambda *_: self._mark("forward", now())),
            module.register_forward_hook(lambda *_: self._mark("forward_end", now())),
            module.register_full_backward_pre_hook(lambda *_: self._mark("backward", now())),
            *(p.register_post_accumulate_grad_hook(lambda *_: self._mark("backward_end", now()))
              for p in module.parameters()),
        ]

    def _mark(self, kind: str, at: float) -> None:
        if self.module.training:
            self.events.append((kind, at))

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _steps(self) -> list[dict[str, float]]:
        steps: list[dict[str, float]] = []
        for kind, at in self.events:
            if kind == "forward":
                steps.append({"forward": at})
            elif steps and (kind not in steps[-1] or kind == "backward_end"):
                steps[-1][kind] = at  # the last parameter gradient ends the backward pass
        return [step for step in steps if len(step) == 4]

    def compute_times(self) -> list[float]:
        return [(s["forward_end"] - s["forward"]) + (s["backward_end"] - s["backward"]) for s in self._steps()]

    def intervals(self) -> list[float]:
        starts = [step["forward"] for step in self._steps()]
        return [b - a for a, b in itertools.pairwise(starts)]


def update_time(module: nn.Module, repeats: int = 20) -> float:
    """Median seconds of one optimizer update (the evaluator's Adam) of ``module`` with gradients set."""
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    for p in module.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    walls = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        optimizer.step()
        walls.append(time.perf_counter() - start)
    return statistics.median(walls[2:])


def evaluator(batches: int, work: int, limit: int | None = None) -> Classification:
    """The evaluator every run uses; ``limit`` caps the training batches (for two-point fits)."""
    return Classification(train_dataloaders=DataLoader(SignalBatches(batches, work=work), batch_size=None),
                          val_dataloaders=DataLoader(SignalBatches(2, work=work, seed=1), batch_size=None),
                          limit_train_batches=limit, **SETTINGS)


def four_models(space: GraphModelSpace) -> list[ExecutableModelSpace]:
    return [space.freeze({"hidden": hidden, "act": act}) for hidden, act in itertools.product([768, 1024], [0, 1])]


def train(engine: ExecutionEngine, models: list[ExecutableModelSpace]) -> float:
    """Wall seconds from submitting ``models`` until every one has ended."""
    start = time.perf_counter()
    engine.submit_models(*models)
    engine.wait_models(*models, wait_all=True)
    wall = time.perf_counter() - start
    bad = [(m.model_id, m.status.value) for m in models if m.status != ModelStatus.Trained]
    if bad:
        raise RuntimeError(f"Models did not train: {bad}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=60, help="training batches per model (one epoch)")
    parser.add_argument("--work", type=int, default=6, help="FFT filter passes per batch (the data cost)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of every measurement")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers")
    warnings.filterwarnings("ignore", "Full backward hook is firing")  # the step clock's hook, as intended
    batches = args.batches
    full, short = evaluator(batches, args.work), evaluator(batches, args.work, limit=2)
    spaces = {"full": GraphModelSpace.from_model(SpectrumNet(), full),
              "short": GraphModelSpace.from_model(SpectrumNet(), short)}
    work_dir = Path(tempfile.mkdtemp(prefix="cgo-speedup-"))
    service = LocalTrainingService(trial_concurrency=1, threads_per_trial=1, log_dir=work_dir,
                                   preload=preload_for(full))
    torch.set_num_threads(1)  # as each trial runs
    times: dict[str, list[float]] = {}
    rounds: list[dict[str, float]] = []

    def timed(name: str, engine: ExecutionEngine, models: list[ExecutableModelSpace]) -> list[ExecutableModelSpace]:
        times.setdefault(name, []).append(train(engine, models))
        return models

    def fitted(index: int, model: ExecutableModelSpace) -> None:
        """An in-process fit of ``model`` with its steps timed: ``m`` is its forward and backward
        passes plus an optimizer update; ``d`` is the rest of the interval between two training steps."""
        module = model.executable_model()
        clock = StepClock(module)
        evaluate_model(module, full)
        clock.close()
        m = statistics.median(clock.compute_times()) + update_time(module)
        times.setdefault(f"m{index}", []).append(m)
        times.setdefault(f"d{index}", []).append(statistics.median(clock.intervals()) - m)

    try:
        solo = TrainingServiceExecutionEngine(service, trial_concurrency=1, log_dir=work_dir / "solo")
        cgo = CrossGraphOptimization(TrainingServiceExecutionEngine(service, trial_concurrency=1,
                                                                    log_dir=work_dir / "cgo"),
                                     max_concurrency_cgo=N_MODELS, batch_waiting_time=60)
        train(solo, four_models(spaces["short"])[:1])  # warm-up: the fork server's first trial
        evaluate_model(four_models(spaces["short"])[0].executable_model(), short)  # and this process
        for round_ in range(args.rounds):
            for index, model in enumerate(four_models(spaces["full"])):  # the baseline, model by model
                timed(f"trial{index}", solo, [model])
            merged = timed("merged", cgo, four_models(spaces["full"]))
            for index, model in enumerate(four_models(spaces["full"])):
                fitted(index, model)
            rounds.append(bound_of(times, batches))
            print(f"round {round_ + 1}: " + ", ".join(f"{key} {value:.3f}" for key, value in rounds[-1].items()))
    finally:
        service.shutdown()

    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    accuracy = [model.metrics.reported_final["val_acc"] for model in merged]
    print(f"median of {args.rounds} rounds: shared per-batch cost d = {median['d'] * 1e3:.1f} ms, per-model per-batch "
          f"cost m = {median['m'] * 1e3:.1f} ms, rest of a trial s = {median['s']:.2f} s ({batches} batches); "
          f"{N_MODELS} separate trials {median['separate']:.2f} s, one merged trial {median['merged']:.2f} s; "
          f"validation accuracy {min(accuracy):.2f}-{max(accuracy):.2f}")
    print(f"speedup {median['speedup']:.2f}x; bound N(s+B(d+m))/(s+B(d+Nm)) = {median['bound']:.2f}x; "
          f"{median['fraction']:.0%} of it (target 80-100%)")
    print(json.dumps({"speedup": round(median["speedup"], 3), "ideal_speedup": round(median["bound"], 3),
                      "fraction_of_ideal": round(median["fraction"], 3), "s": round(median["s"], 3),
                      "d": round(median["d"], 5), "m": round(median["m"], 5)}))


def bound_of(times: dict[str, list[float]], batches: int) -> dict[str, float]:
    """The latest round's speedup, its bound from that round's measured costs, and their ratio."""
    last = {name: values[-1] for name, values in times.items()}
    d = statistics.mean(last[f"d{i}"] for i in range(N_MODELS))
    m = statistics.mean(last[f"m{i}"] for i in range(N_MODELS))
    s = statistics.mean(last[f"trial{i}"] - batches * (d + last[f"m{i}"]) for i in range(N_MODELS))
    separate = sum(last[f"trial{i}"] for i in range(N_MODELS))
    speedup = separate / last["merged"]
    bound = N_MODELS * (s + batches * (d + m)) / (s + batches * (d + N_MODELS * m))
    return {"separate": separate, "merged": last["merged"], "s": s, "d": d, "m": m, "speedup": speedup,
            "bound": bound, "fraction": speedup / bound}


if __name__ == "__main__":
    main()
