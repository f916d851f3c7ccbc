"""Memory held per frozen model, simplified format vs raw format, for a space with 20 choices.

A multi-trial search keeps every model it sampled (for the store, de-duplication and export), so
what one frozen model costs decides how long a search can run. The simplified format should cost
about one small sample dict per model (budget: under 2 KB); the raw format holds a whole module
with its weights.

Method: build the frozen models into a list between two ``tracemalloc`` snapshots (after a warm-up
and ``gc.collect()``) and divide the growth by the number of models. ``tracemalloc`` only sees
Python allocations, not torch's tensor storage, so for the raw format the bytes of the distinct
tensor storages the models hold are counted separately and added. Raw models are heavy and slow to
copy, so fewer are built and the figure per model is extrapolated to 10,000 (said in the table).

Usage: python benchmarks/space_memory.py [--simplified N] [--raw N]   (last line: one JSON object)
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import nasflow
from nasflow.nn import LayerChoice, ModelSpace, MutableLinear
from nasflow.space import ExecutableModelSpace, RawFormatModelSpace, SimplifiedModelSpace

SIMPLIFIED_BUDGET_BYTES = 2048
TARGET_MODELS = 10_000


class TwentyChoices(ModelSpace, label_prefix="bench"):
    """Ten searched widths and ten searched activations: 20 choices, 3**20 models."""

    def __init__(self, in_dim: int = 32, classes: int = 10, layers: int = 10) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width: Any = in_dim
        for i in range(layers):
            out = nasflow.choice(f"width_{i}", [16, 32, 48])
            blocks.append(MutableLinear(width, out))
            blocks.append(LayerChoice([nn.ReLU(), nn.GELU(), nn.Tanh()], label=f"act_{i}"))
            width = out
        self.body = nn.Sequential(*blocks)
        self.head = MutableLinear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def tensor_bytes(models: list[ExecutableModelSpace]) -> int:
    """Bytes of the distinct tensor storages the models hold (invisible to tracemalloc)."""
    seen: dict[int, int] = {}
    for model in models:
        module = model.executable_model()
        for tensor in [*module.parameters(), *module.buffers()]:
            storage = tensor.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def measure(freeze: Callable[[dict], ExecutableModelSpace], samples: list[dict]) -> tuple[list, int, float]:
    """Freeze every sample, keeping the models; returns them, the traced growth and the seconds."""
    for sample in samples[:3]:  # warm-up: lazy caches, first-call allocations
        freeze(sample)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    models = [freeze(sample) for sample in samples]
    seconds = time.perf_counter() - start
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return models, grown, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simplified", type=int, default=TARGET_MODELS, help="simplified models to hold")
    parser.add_argument("--raw", type=int, default=300, help="raw models to hold (extrapolated to 10,000)")
    args = parser.parse_args()

    torch.manual_seed(0)
    space = TwentyChoices()
    labels = space.simplify()
    assert len(labels) == 20, sorted(labels)
    rng = random.Random(0)
    count = max(args.simplified, args.raw)
    samples = [{k: m.random(random_state=rng) for k, m in labels.items()} for _ in range(count)]

    simplified = SimplifiedModelSpace.from_model(space)
    models, grown, simplified_s = measure(simplified.freeze, samples[: args.simplified])
    simplified_per_model = grown / len(models)
    assert all(m.sample is not None for m in models)
    del models

    raw = RawFormatModelSpace.from_model(space)
    models, grown, raw_s = measure(raw.freeze, samples[: args.raw])
    raw_python = grown / len(models)
    raw_tensors = tensor_bytes(models) / len(models)
    raw_per_model = raw_python + raw_tensors
    del models

    rows = [
        ("simplified", args.simplified, "held", simplified_per_model, 0.0, simplified_per_model, simplified_s),
        ("raw", args.raw, f"held, x{TARGET_MODELS / args.raw:.1f} extrapolated", raw_python, raw_tensors,
         raw_per_model, raw_s),
    ]
    print(f"Space: {type(space).__name__}, {len(labels)} choices; tracemalloc growth per frozen model")
    header = f"{'format':<11} {'models':>7} {'how':<26} {'python B':>10} {'tensor B':>10} {'total B/model':>14}"
    header += f" {'at 10,000 (MB)':>15} {'freeze ms/model*':>16}"
    print(header)
    print("-" * len(header))
    for name, count, how, python_b, tensor_b, total_b, seconds in rows:
        print(
            f"{name:<11} {count:>7} {how:<26} {python_b:>10.0f} {tensor_b:>10.0f} {total_b:>14.0f}"
            f" {total_b * TARGET_MODELS / 1e6:>15.1f} {seconds * 1000 / count:>16.3f}"
        )
    print("* freeze time measured under tracemalloc, which slows allocation several times")
    within = simplified_per_model < SIMPLIFIED_BUDGET_BYTES
    print(f"simplified budget {SIMPLIFIED_BUDGET_BYTES} B/model: {'OK' if within else 'EXCEEDED'}; "
          f"raw / simplified = {raw_per_model / simplified_per_model:.0f}x")
    print(json.dumps({
        "simplified_bytes_per_model": round(simplified_per_model, 1),
        "raw_bytes_per_model": round(raw_per_model, 1),
        "simplified_models_held": args.simplified,
        "raw_models_held": args.raw,
        "raw_extrapolated": args.raw < TARGET_MODELS,
        "raw_python_bytes_per_model": round(raw_python, 1),
        "raw_tensor_bytes_per_model": round(raw_tensors, 1),
    }))
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
