"""``NasBench201Benchmark``: NNI's benchmark evaluator for NAS-Bench-201, offline."""

from __future__ import annotations

import random

from nasflow.mutable import LabeledMutable, Sample
from nasflow.runtime import report_final_result
from nasflow.space.metrics import MetricDirection

from .nasbench201 import check_dataset, check_metric, query_nb201_trial_stats, validate_nb201_space
from .space import BenchmarkEvaluator

__all__ = ["NasBench201Benchmark"]

_ACCURACIES = {"valid_acc"}


class NasBench201Benchmark(BenchmarkEvaluator):
    """Reports a NAS-Bench-201 architecture's ``metric`` from the offline table.

    As NNI, each evaluation reports one recorded training run, picked at random among the seeds
    (so repeated evaluations are noisy, as retraining is), and accuracies as fractions in [0, 1].
    ``reduction='mean'`` reports the mean over seeds instead; ``seed`` makes the picks repeatable.
    The offline table has no per-epoch results, so ``include_intermediates`` must stay False.
    """

    def __init__(self, num_epochs: int = 200, dataset: str = "cifar100", metric: str = "valid_acc",
                 include_intermediates: bool = False, *, reduction: str | None = None,
                 seed: int | None = None) -> None:
        if include_intermediates:
            raise ValueError("NasBench201Benchmark: the offline NAS-Bench-201 table holds final results only; "
                             "pass include_intermediates=False.")
        if isinstance(num_epochs, str):
            raise TypeError(f"NasBench201Benchmark: num_epochs comes first (as in NNI), got {num_epochs!r}; "
                            f"pass dataset={num_epochs!r} by keyword.")
        if num_epochs != 200:
            raise ValueError(f"NasBench201Benchmark: the offline table holds 200-epoch results, not {num_epochs}; "
                             "pass num_epochs=200.")
        if reduction not in (None, "mean"):
            raise ValueError(f"NasBench201Benchmark: reduction must be None or 'mean', got {reduction!r}.")
        check_dataset(dataset)
        self.num_epochs, self.dataset, self.metric = num_epochs, dataset, check_metric(metric)
        self.include_intermediates, self.reduction, self.seed = False, reduction, seed
        self._rng = random.Random(seed)

    @property
    def metric_direction(self) -> MetricDirection:  # type: ignore[override]
        """Accuracy is maximized; training time, parameters and latency are costs, minimized."""
        return "maximize" if self.metric in _ACCURACIES else "minimize"

    def validate_space(self, space: dict[str, LabeledMutable]) -> None:
        validate_nb201_space(space, self.dataset)

    def evaluate(self, sample: Sample) -> float:  # type: ignore[override]
        if not isinstance(sample, dict):
            raise TypeError("NasBench201Benchmark evaluates samples, not modules: wrap the space with "
                            "nasflow.benchmark.BenchmarkModelSpace.from_model(space, evaluator).")
        runs = query_nb201_trial_stats(sample, self.num_epochs, self.dataset, self.reduction)
        run = runs[0] if len(runs) == 1 else self._rng.choice(runs)
        value = run[self.metric] / 100 if self.metric in _ACCURACIES else run[self.metric]
        report_final_result(value)
        return value

    def __repr__(self) -> str:
        return (f"NasBench201Benchmark(dataset={self.dataset!r}, metric={self.metric!r}, "
                f"reduction={self.reduction!r}, seed={self.seed!r})")

