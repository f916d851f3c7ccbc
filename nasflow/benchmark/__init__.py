"""Offline NAS benchmarks: strategies run against recorded results in seconds (``nasflow[benchmark]``).

``BenchmarkModelSpace.from_model(nasflow.hub.NasBench201(), NasBench201Benchmark('cifar10'))``
is a space whose models are looked up in NAS-Bench-201's table instead of trained.
"""

from .evaluator import NasBench201Benchmark
from .nasbench201 import NB201_EDGES, NB201_OPERATIONS, nb201_arch, nb201_best, query_nb201_trial_stats
from .space import BenchmarkEvaluator, BenchmarkModelSpace

__all__ = [
    "BenchmarkEvaluator", "BenchmarkModelSpace", "NasBench201Benchmark",
    "query_nb201_trial_stats", "nb201_arch", "nb201_best", "NB201_EDGES", "NB201_OPERATIONS",
]
