"""Graph format benchmark: the path a trial takes, for a DARTS-style space.

Space: 8 DARTS cells of 4 nodes (2 operations each, 2 predecessors), 8 candidate operations per
operation (none, max/avg pool, skip, sep conv 3x3/5x5, dilated conv 3x3/5x5), 16 channels.

Measured, as a trial goes:
- ``convert_s``: ``GraphModelSpace.from_model(space)`` in the experiment process;
- ``per_sample_ms``: per sample, freeze + serialize (the trial payload) in the experiment process,
  then deserialize + build the module in a worker that has built models before (warm caches);
- ``per_sample_cold_ms``: the same when the worker is fresh: its first model, no class compiled yet;
  the median over the fresh workers.
Workers are separate processes prepared as the local training service prepares them (nasflow and
torch imported, ``gc.freeze()``), timed from a payload's arrival.
Targets: conversion under 3 s, both per-sample figures under 100 ms.

    .venv/bin/python benchmarks/graph_format.py [--samples 100] [--workers 8] [--seed 0]

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
                                   label=f"cell{i}"))
            c_prev_prev, c_prev = c_prev, channels * nodes
        self.classifier = nn.Linear(c_prev, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(s1, 1), 1))


WORKER = """
import gc, importlib, sys, time
import cloudpickle
from nasflow.experiment.engines import WORKER_PRELOAD
for name in (*WORKER_PRELOAD, "nasflow.runtime"):  # what a local trial worker starts with, as its fork
    importlib.import_module(name)                  # server prepares it
gc.freeze()
for path in sys.argv[1:]:
    payload = open(path, "rb").read()
    start, cpu = time.perf_counter(), time.process_time()
    model = cloudpickle.loads(payload)
    module = model.executable_model()
    print((time.perf_counter() - start) * 1e3, (time.process_time() - cpu) * 1e3)
"""


def worker_build_ms(payloads: list[bytes], workers: int, folder: Path) -> list[list[tuple[float, float]]]:
    """Deserialize + build the payloads in ``workers`` fresh processes, each taking its share in turn
    (its first build is cold, the others reuse what it compiled): (wall, CPU) milliseconds per build."""
    paths = []
    for index, payload in enumerate(payloads):
        paths.append(folder / f"payload_{index}.pkl")
        paths[-1].write_bytes(payload)
    times = []
    for worker in range(workers):
        result = subprocess.run([sys.executable, "-c", WORKER, *map(str, paths[worker::workers])], check=True,
                                capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        times.append([(float(w), float(c)) for w, c in (line.split() for line in result.stdout.split("\n") if line)])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8, help="fresh worker processes (their first build is cold)")
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
    sender, payloads = [], []
    for _ in range(opts.samples):
        sample: dict = {}
        for mutable in labels.values():
            mutable.random(sample, rng)
        t0, c0 = time.perf_counter(), time.process_time()
        payloads.append(cloudpickle.dumps(model_space.freeze(sample)))  # the experiment process
        sender.append(((time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3))
    module = cloudpickle.loads(payloads[-1]).executable_model()
    with torch.no_grad():
        out = module.eval()(torch.randn(2, 3, 16, 16))
    with tempfile.TemporaryDirectory() as folder:
        builds = worker_build_ms(payloads, opts.workers, Path(folder))
    order = [i for w in range(opts.workers) for i in range(w, opts.samples, opts.workers)]  # payload of each build
    flat = [t for times in builds for t in times]
    cold = {order[sum(map(len, builds[:w]))] for w in range(opts.workers) if builds[w]}
    total = {i: (sender[i][0] + flat[k][0], sender[i][1] + flat[k][1]) for k, i in enumerate(order)}
    warm_ms = [total[i][0] for i in total if i not in cold]
    cold_ms, cold_cpu = [total[i][0] for i in cold], [total[i][1] for i in cold]
    per_sample_ms = statistics.mean(warm_ms)
    per_sample_cold_ms = statistics.median(cold_ms)

    print(f"DARTS-style space: 8 cells x 4 nodes x 2 ops, 8 candidates; {len(labels)} labels, "
          f"{len(model_space.graphs)} graphs; space built in {build_s:.2f} s")
    print(f"conversion (from_model):                 {convert_s:.3f} s   (target < 3 s)")
    print(f"per sample, warm worker ({len(warm_ms)} builds):    {per_sample_ms:.1f} ms mean, "
          f"{statistics.median(warm_ms):.1f} median   (target < 100 ms)")
    print(f"per sample, fresh worker ({len(cold_ms)} processes): {per_sample_cold_ms:.1f} ms median, "
          f"{max(cold_ms):.1f} max   (target < 100 ms)")
    print(f"  of which freeze + serialize {statistics.median(w for w, _ in sender):.1f} ms median; CPU time per "
          f"sample: warm {statistics.median(total[i][1] for i in total if i not in cold):.1f} ms, fresh "
          f"{statistics.median(cold_cpu):.1f} ms (wall time also counts waiting for a core)")
    print(f"  payload {statistics.mean(map(len, payloads)) / 1e3:.1f} kB; last model: "
          f"{sum(p.numel() for p in module.parameters())} parameters, output {tuple(out.shape)}")
    print(json.dumps({"convert_s": round(convert_s, 4), "per_sample_ms": round(per_sample_ms, 2),
                      "per_sample_cold_ms": round(per_sample_cold_ms, 2)}))


if __name__ == "__main__":
    main()
