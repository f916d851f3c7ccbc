"""``BenchmarkModelSpace``: a model format whose models are table entries, not modules.

Querying a benchmark needs only the sample, so building each candidate's torch module (tens of
milliseconds for NAS-Bench-201) would be the whole cost of a search. This format keeps the space's
decisions and hands the sample to a ``BenchmarkEvaluator``, so a strategy runs a thousand
evaluations in seconds.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any

from torch import nn

from nasflow.evaluator import Evaluator
from nasflow.mutable import LabeledMutable, Mutable, Sample
from nasflow.mutable.base import IsLeaf
from nasflow.space import ExecutableModelSpace, ModelStatus
from nasflow.space.metrics import Metrics

__all__ = ["BenchmarkEvaluator", "BenchmarkModelSpace"]


class BenchmarkEvaluator(Evaluator):
    """An evaluator that looks a sample's results up instead of training a module."""

    @abc.abstractmethod
    def validate_space(self, space: dict[str, LabeledMutable]) -> None:
        """Raise, naming the label and the fix, when ``space`` is not the benchmark's space."""

    @abc.abstractmethod
    def evaluate(self, sample: Sample) -> Any:  # type: ignore[override]
        """Report the sample's results through ``nasflow.report_*`` and return the final metric."""


class BenchmarkModelSpace(ExecutableModelSpace):
    """A space's decisions plus a ``BenchmarkEvaluator``; a frozen model is its sample.

    ``BenchmarkModelSpace.from_model(NasBench201(), NasBench201Benchmark())`` is what
    ``NasExperiment`` (or a strategy with an engine) takes in place of the space.
    """

    __slots__ = ("mutables", "evaluator", "sample", "status", "model_id", "_metrics")

    def __init__(self, mutables: dict[str, LabeledMutable], evaluator: BenchmarkEvaluator,
                 sample: Sample | None = None) -> None:
        self.mutables = mutables
        self.evaluator = evaluator
        self.sample = sample
        self.status = ModelStatus.Initialized if sample is None else ModelStatus.Frozen
        self.model_id: int | None = None
        self._metrics: Metrics | None = None

    @classmethod
    def from_model(cls, model_space: Any, evaluator: Any = None, **kwargs: Any) -> BenchmarkModelSpace:
        if kwargs:
            raise TypeError(f"BenchmarkModelSpace.from_model takes no options, got {sorted(kwargs)}.")
        if not isinstance(evaluator, BenchmarkEvaluator):
            raise TypeError(f"BenchmarkModelSpace needs a BenchmarkEvaluator (e.g. NasBench201Benchmark()), "
                            f"got {evaluator!r}.")
        if isinstance(model_space, dict):
            mutables = dict(model_space)
        elif isinstance(model_space, (nn.Module, Mutable)):
            mutables = model_space.simplify()
        else:
            raise TypeError(f"BenchmarkModelSpace takes a model space (e.g. nasflow.hub.NasBench201()) or its "
                            f"simplify() dict, got {type(model_space).__name__}.")
        evaluator.validate_space(mutables)
        return cls(mutables, evaluator)

    def _space_leaf_mutables(self, is_leaf: IsLeaf) -> Iterator[LabeledMutable]:
        for mutable in self.mutables.values():
            yield from mutable.leaf_mutables(is_leaf)

    def _freeze_model(self, sample: Sample) -> BenchmarkModelSpace:
        return BenchmarkModelSpace(self.mutables, self.evaluator,
                                   {label: sample[label] for label in self.mutables if label in sample})

    def executable_model(self) -> nn.Module:
        raise TypeError("A benchmark model is an entry of a results table and has no torch module; build the "
                        "space itself with model_context(sample) to get one.")

    def execute(self) -> None:
        if self.sample is None:
            raise RuntimeError("Freeze the benchmark space with a sample before evaluating it.")
        self.evaluator.evaluate(self.sample)
