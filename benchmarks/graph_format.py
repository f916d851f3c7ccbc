"""Graph format benchmark: the path a trial takes, for a DARTS-style space.

Space: 8 DARTS cells of 4 nodes (2 operations each, 2 predecessors), 8 candidate operations per
operation (none, max/avg pool, skip, sep conv 3x3/5x5, dilated conv 3x3/5x5), 16 channels.

Measured, as a trial goes:
- ``convert_s``: ``GraphModelSpace.from_model(space)`` in the experiment process;
- ``per_sample_ms``: per sample, freeze + serialize (the trial payload) in the experiment process,
  then deserialize + build the module in a worker that has built models before (warm caches);
- ``per_sample_cold_ms``: freeze + serialize, then deserialize + build in a fresh process (the first
  model it builds: no class compiled yet), timed from the payload's arrival in a process prepared as
  the local training service prepares its workers (nasflow and torch imported, ``gc.freeze()``); the
  median over fresh processes.
Targets: conversion under 3 s, both per-sample figures under 100 ms.

    .venv/bin/python benchmarks/graph_format.py [--samples 100] [--cold 8] [--seed 0]

The last line is one JSON object: {"convert_s": ..., "per_sample_ms": ..., "per_sample_cold_ms": ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cloudpickle
import torch
from torch import nn

from nasflow.nn import Cell, ModelSpace
from nasflow.space.graph import GraphModelSpace


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class ReLUConvBN(nn.Module):
    def __init__(self, c: int, kernel: int, dilation: int = 1, separable: bool = False) -> None:
        super().__init__()
        padding = dilation * (kernel - 1) // 2
        layers: list[nn.Module] = [nn.ReLU(inplace=False)]
        if separable:
            layers += [nn.Conv2d(c, c, kernel, padding=padding, dilation=dilation, groups=c, bias=False),
                       nn.Conv2d(c, c, 1, bias=False)]
        else:
            layers.append(nn.Conv2d(c, c, kernel, padding=padding, dilation=dilation, bias=False))
        layers.append(nn.BatchNorm2d(c, affine=False))
        self.op = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """DARTS's separable convolution: two separable ReLU-conv-BN stages."""

    def __init__(self, c: int, kernel: int) -> None:
        super().__init__()
        self.first = ReLUConvBN(c, kernel, separable=True)
        self.second = ReLUConvBN(c, kernel, separable=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def darts_candidates(c: int) -> dict:
    return {
        "none": lambda: Zero(),
        "max_pool_3x3": lambda: nn.MaxPool2d(3, 1, 1),
        "avg_pool_3x3": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
        "skip_connect": lambda: nn.Identity(),
        "sep_conv_3x3": lambda: SepConv(c, 3),
        "sep_conv_5x5": lambda: SepConv(c, 5),
        "dil_conv_3x3": lambda: ReLUConvBN(c, 3, dilation=2, separable=True),
        "dil_conv_5x5": lambda: ReLUConvBN(c, 5, dilation=2, separable=True),
    }


class Preprocess(nn.Module):
    def __init__(self, c_prev_prev: int, c_prev: int, c: int) -> None:
        super().__init__()
        self.pre0 = ReLUConvBNPlain(c_prev_prev, c)
        self.pre1 = ReLUConvBNPlain(c_prev, c)

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.pre0(inputs[0]), self.pre1(inputs[1])]


class ReLUConvBNPlain(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DartsSpace(ModelSpace, label_prefix="darts"):
    def __init__(self, cells: int = 8, nodes: int = 4, channels: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.cells = nn.ModuleList()
        c_prev_prev, c_prev = channels, channels
        for i in range(cells):
            self.cells.append(Cell(darts_candidates(channels), num_nodes=nodes, num_ops_per_node=2,
                                   num_predecessors=2, preprocessor=Preprocess(c_prev_prev, c_prev, channels),
                                   label=f"darts/cell{i}"))
            c_prev_prev, c_prev = c_prev, channels * nodes
        self.classifier = nn.Linear(c_prev, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(s1, 1), 1))


COLD_TRIAL = """
import gc, importlib, sys, time
import cloudpickle
from nasflow.experiment.engines import WORKER_PRELOAD
for name in (*WORKER_PRELOAD, "nasflow.runtime"):  # what a local trial worker starts with, as its fork
    importlib.import_module(name)                  # server prepares it
gc.freeze()
payload = open(sys.argv[1], "rb").read()
start, cpu = time.perf_counter(), time.process_time()
model = cloudpickle.loads(payload)
module = model.executable_model()
print((time.perf_counter() - start) * 1e3, (time.process_time() - cpu) * 1e3)
"""


def cold_build_ms(payloads: list[bytes], folder: Path) -> list[tuple[float, float]]:
    """Deserialize + build one payload in each of as many fresh processes (preloading is not timed):
    (wall, CPU) milliseconds for each."""
    times = []
    for index, payload in enumerate(payloads):
        path = folder / f"payload_{index}.pkl"
        path.write_bytes(payload)
        result = subprocess.run([sys.executable, "-c", COLD_TRIAL, str(path)], capture_output=True, text=True,
                                check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall, cpu = result.stdout.strip().splitlines()[-1].split()
        times.append((float(wall), float(cpu)))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--cold", type=int, default=8, help="fresh processes for the cold figure")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()
    torch.manual_seed(opts.seed)
    torch.set_num_threads(1)

    start = time.perf_counter()
    space = DartsSpace()
    build_s = time.perf_counter() - start

    start = time.perf_counter()
    model_space = GraphModelSpace.from_model(space)
    convert_s = time.perf_counter() - start
    labels = model_space.simplify()

    rng = random.Random(opts.seed)
    sender_ms, sender_cpu_ms, worker_ms, payloads = [], [], [], []
    for _ in range(opts.samples):
        sample: dict = {}
        for mutable in labels.values():
            mutable.random(sample, rng)
        t0, c0 = time.perf_counter(), time.process_time()
        payload = cloudpickle.dumps(model_space.freeze(sample))  # the experiment process
        t1, c1 = time.perf_counter(), time.process_time()
        module = cloudpickle.loads(payload).executable_model()  # a worker that has built models before
        t2 = time.perf_counter()
        sender_ms.append((t1 - t0) * 1e3)
        sender_cpu_ms.append((c1 - c0) * 1e3)
        worker_ms.append((t2 - t1) * 1e3)
        payloads.append(payload)
    with torch.no_grad():
        out = module.eval()(torch.randn(2, 3, 16, 16))
    with tempfile.TemporaryDirectory() as folder:
        cold = cold_build_ms(payloads[: opts.cold], Path(folder))
    cold_ms, cold_cpu_ms = [w for w, _ in cold], [c for _, c in cold]
    per_sample_ms = statistics.mean(s + w for s, w in zip(sender_ms, worker_ms, strict=True))
    per_sample_cold_ms = statistics.median(s + c for s, c in zip(sender_ms, cold_ms, strict=False))
    cold_cpu = statistics.median(s + c for s, c in zip(sender_cpu_ms, cold_cpu_ms, strict=False))

    print(f"DARTS-style space: 8 cells x 4 nodes x 2 ops, 8 candidates; {len(labels)} labels, "
          f"{len(model_space.graphs)} graphs; space built in {build_s:.2f} s")
    print(f"conversion (from_model):                  {convert_s:.3f} s   (target < 3 s)")
    print(f"per sample, warm worker ({opts.samples} samples):     {per_sample_ms:.1f} ms mean "
          f"(freeze + serialize {statistics.mean(sender_ms):.1f}, deserialize + build "
          f"{statistics.mean(worker_ms):.1f})   (target < 100 ms)")
    print(f"per sample, fresh process ({len(cold_ms)} processes): {per_sample_cold_ms:.1f} ms median "
          f"(deserialize + build {statistics.median(cold_ms):.1f} ms median, {max(cold_ms):.1f} max)   "
          "(target < 100 ms)")
    print(f"  CPU time: {cold_cpu:.1f} ms per sample in a fresh process (freeze + serialize "
          f"{statistics.median(sender_cpu_ms):.1f}, deserialize + build {statistics.median(cold_cpu_ms):.1f}); "
          "wall time also counts waiting for a core")
    print(f"  payload {statistics.mean(map(len, payloads)) / 1e3:.1f} kB; last model: "
          f"{sum(p.numel() for p in module.parameters())} parameters, output {tuple(out.shape)}")
    print(json.dumps({"convert_s": round(convert_s, 4), "per_sample_ms": round(per_sample_ms, 2),
                      "per_sample_cold_ms": round(per_sample_cold_ms, 2)}))


if __name__ == "__main__":
    main()
