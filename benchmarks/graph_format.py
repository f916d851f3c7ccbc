"""Graph format benchmark: convert a DARTS-style space, then freeze + generate code + instantiate.

Space: 8 DARTS cells of 4 nodes (2 operations each, 2 predecessors), 8 candidate operations per
operation (none, max/avg pool, skip, sep conv 3x3/5x5, dilated conv 3x3/5x5), 16 channels.
Targets: conversion under 3 s, freeze + codegen + instantiate under 100 ms per sample.

    /work/venv/bin/python benchmarks/graph_format.py [--samples 100] [--seed 0]

The last line is one JSON object: {"convert_s": ..., "per_sample_ms": ...}.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
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
    freeze_ms, codegen_ms, instantiate_ms, total_ms, cpu_ms = [], [], [], [], []
    from nasflow.space.graph.codegen import generate_code, instantiate

    for _ in range(opts.samples):
        sample: dict = {}
        for mutable in labels.values():
            mutable.random(sample, rng)
        c0, t0 = time.process_time(), time.perf_counter()
        frozen = model_space.freeze(sample)
        t1, c1 = time.perf_counter(), time.process_time()
        generate_code(frozen, main="namespace")  # timed alone for the breakdown
        c2, t2 = time.process_time(), time.perf_counter()
        instantiate(frozen)  # generates again, compiles, executes and instantiates
        t3, c3 = time.perf_counter(), time.process_time()
        cpu_ms.append(((c1 - c0) + (c3 - c2)) * 1e3)
        freeze_ms.append((t1 - t0) * 1e3)
        codegen_ms.append((t2 - t1) * 1e3)
        instantiate_ms.append((t3 - t2) * 1e3)
        total_ms.append(((t1 - t0) + (t3 - t2)) * 1e3)
    module = instantiate(frozen)
    with torch.no_grad():
        out = module.eval()(torch.randn(2, 3, 16, 16))
    per_sample_ms = statistics.mean(total_ms)

    print(f"DARTS-style space: 8 cells x 4 nodes x 2 ops, 8 candidates; {len(labels)} labels, "
          f"{len(model_space.graphs)} graphs; space built in {build_s:.2f} s")
    print(f"conversion (from_model):           {convert_s:.3f} s   (target < 3 s)")
    print(f"per sample over {opts.samples} samples:      {per_sample_ms:.1f} ms mean, "
          f"{statistics.median(total_ms):.1f} ms median, {max(total_ms):.1f} ms max   (target < 100 ms)")
    print(f"  CPU time per sample {statistics.mean(cpu_ms):.1f} ms mean (wall time also counts waiting for a core)")
    print(f"  freeze {statistics.mean(freeze_ms):.1f} ms | codegen {statistics.mean(codegen_ms):.1f} ms | "
          f"codegen + compile + instantiate {statistics.mean(instantiate_ms):.1f} ms")
    print(f"  last model: {sum(p.numel() for p in module.parameters())} parameters, output {tuple(out.shape)}")
    print(json.dumps({"convert_s": round(convert_s, 4), "per_sample_ms": round(per_sample_ms, 2)}))


if __name__ == "__main__":
    main()
