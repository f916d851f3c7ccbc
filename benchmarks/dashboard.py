"""Dashboard API latency for a store of 10,000 trials, on the path a user takes: ``nasflow view``.

The store is written through the store's own API the way an experiment writes it: per model a
graph-format payload (the real IR JSON of an 8-choice space), a trial and log path, training, ten
intermediate metrics, then a final metric (or, one model in ten, a failure with a traceback).
Then a fresh ``nasflow view`` process serves it, and this process times HTTP requests over
loopback the way the browser sends them:

- table pages (50 rows): the first page; sorted by metric; by duration; by a choice; filtered by
  status, a choice and a metric range; and the last page sorted by metric. ``table_page_ms`` is the
  slowest of their medians; ``table_first_request_ms`` the very first request (cold caches).
- ``curves_ms``: every model's intermediate curve at once (100,000 points), median.

Baseline: what the command line's listing does, loading every record (``ExperimentStore.models``
without payloads) and sorting them in Python, in this process.

    .venv/bin/python benchmarks/dashboard.py [--trials 10000] [--repeats 7]

Last line: {"trials": 10000, "table_page_ms": ..., "curves_ms": ..., ...}; the budget is 200 ms each.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BUDGET_MS = 200.0
STEPS = 10
TABLE_QUERIES = {
    "first page": "",
    "by metric": "sort=metric&order=desc",
    "by duration": "sort=duration&order=desc",
    "by choice": "sort=choice:width_1",
    "filtered": "status=trained&c.act_2=%22relu%22&metric_min=0.5",
    "last page by metric": "sort=metric&offset={last}",
}


def graph_payload() -> bytes | str | None:
    """What the experiment stores for one model of an 8-choice graph-format space (its IR JSON)."""
    import torch
    from torch import nn

    import nasflow
    from nasflow.experiment.recording import model_payload
    from nasflow.nn import LayerChoice, ModelSpace, MutableLinear
    from nasflow.space.graph import GraphModelSpace

    class Space(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            widths = [nasflow.choice(f"width_{i}", [16, 32, 64]) for i in range(4)]
            dims = [8, *widths]
            self.layers = nn.ModuleList(MutableLinear(dims[i], dims[i + 1]) for i in range(4))
            self.acts = nn.ModuleList(LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "gelu": nn.GELU()},
                                                  label=f"act_{i}") for i in range(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer, act in zip(self.layers, self.acts, strict=True):
                x = act(layer(x))
            return x

    space = GraphModelSpace.from_model(Space(), None)
    return model_payload(space.default())  # default(): the model of every default choice


def build(path: Path, trials: int, seed: int = 0) -> None:
    from nasflow.experiment.store import ExperimentStore

    rng = random.Random(seed)
    payload = graph_payload()
    store = ExperimentStore.create(path, "bench", "dashboard benchmark", {"max_trial_number": trials})
    for i in range(trials):
        sample = {f"width_{k}": rng.choice([16, 32, 64]) for k in range(4)}
        sample.update({f"act_{k}": rng.choice(["relu", "tanh", "gelu"]) for k in range(4)})
        store.add_model(i, sample, format="graph", payload=payload, status="frozen")
        store.set_trial([i], f"{i}-trial", path / "trials" / f"{i}-trial.log")
        store.set_status(i, "training")
        for _ in range(STEPS):
            store.add_intermediate(i, rng.random())
        if i % 10 == 3:
            store.set_status(i, "failed", f"Traceback (most recent call last):\n  ...\nRuntimeError: diverged {i}")
        else:
            store.set_final(i, rng.random())
            store.set_status(i, "trained")
    store.close()


def timed(url: str) -> tuple[float, bytes]:
    start = time.perf_counter()
    with urllib.request.urlopen(url) as response:
        body = response.read()
    return (time.perf_counter() - start) * 1000, body


def baseline_ms(path: Path) -> float:
    from nasflow.experiment.store import ExperimentStore

    start = time.perf_counter()
    with ExperimentStore.open(path, read_only=True) as store:
        records = store.models(include_payload=False)
    records.sort(key=lambda r: -(r.metrics.final or 0.0))
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nasflow-dashboard-bench-"))
    view = None
    try:
        start = time.perf_counter()
        build(root / "bench", args.trials)
        print(f"store of {args.trials} trials written in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        view = subprocess.Popen([sys.executable, "-m", "nasflow.cli", "view", "bench", "--dir", str(root),
                                 "--port", "0"], stdout=subprocess.PIPE, text=True)
        line = view.stdout.readline() if view.stdout else ""
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if not found:
            raise SystemExit(f"nasflow view did not start: {line!r}")
        url = found.group()
        last = (args.trials - 1) // 50 * 50
        first_ms, _ = timed(url + "api/trials?" + TABLE_QUERIES["first page"])
        medians = {}
        for name, query in TABLE_QUERIES.items():
            times = [timed(url + "api/trials?limit=50&" + query.format(last=last))[0] for _ in range(args.repeats)]
            medians[name] = statistics.median(times)
            print(f"table {name:20s} median {medians[name]:7.1f} ms  (min {min(times):.1f})", file=sys.stderr)
        curve_times, body = [], b""
        for _ in range(args.repeats):
            elapsed, body = timed(url + "api/curves?ids=all")
            curve_times.append(elapsed)
        points = sum(len(s["values"]) for s in json.loads(body)["series"])
        curves = statistics.median(curve_times)
        print(f"curves ({points} points)      median {curves:7.1f} ms  (min {min(curve_times):.1f})", file=sys.stderr)
        baseline = statistics.median(baseline_ms(root / "bench") for _ in range(3))
        print(f"baseline: load all records and sort: {baseline:.1f} ms", file=sys.stderr)
        table = max(medians.values())
        print(json.dumps({
            "trials": args.trials, "table_page_ms": round(table, 1), "curves_ms": round(curves, 1),
            "table_first_request_ms": round(first_ms, 1), "curve_points": points,
            "baseline_load_all_records_ms": round(baseline, 1), "budget_ms": BUDGET_MS,
            "within_budget": table < BUDGET_MS and curves < BUDGET_MS,
        }))
    finally:
        if view is not None:
            view.terminate()
            view.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
