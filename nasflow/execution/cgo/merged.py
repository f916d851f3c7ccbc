"""``MergedTrial``: the one model the engine below runs for a group of merged models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import nn

from nasflow.mutable import LabeledMutable, Sample
from nasflow.space import ExecutableModelSpace, ModelStatus

from .logical_plan import DedupInputOptimizer, LogicalPlan, device_map_for

__all__ = ["MergedTrial"]


class MergedTrial(ExecutableModelSpace):
    """Trains ``models`` (graph-format, sharing data) as one module, reporting per-model metrics.

    It travels to a worker like any model (the graphs as JSON, the evaluators as recipes); there
    ``execute`` builds the plan, dedups its input, places models on devices and trains them with
    one multi-model evaluator whose reports carry one entry per model.
    """

    def __init__(self, models: list[ExecutableModelSpace]) -> None:
        self.models = models
        self.evaluator = None
        self.sample = {"merged_models": [m.model_id for m in models]}
        self.status = ModelStatus.Frozen
        self.model_id: int | None = None

    @classmethod
    def from_model(cls, model_space: nn.Module, evaluator: Any = None, **kwargs: Any) -> MergedTrial:
        raise TypeError("A MergedTrial is made by the CGO middleware from frozen models, not from a space.")

    def _space_leaf_mutables(self, is_leaf: Any) -> Iterator[LabeledMutable]:
        return iter(())

    def _freeze_model(self, sample: Sample) -> ExecutableModelSpace:
        raise TypeError("A MergedTrial is already a frozen group of models.")

    def plan(self) -> LogicalPlan:
        return DedupInputOptimizer().convert(LogicalPlan.from_models(self.models))

    def executable_model(self) -> nn.Module:
        return self.plan().physical_module(device_map_for(len(self.models)))

    def execute(self) -> None:
        from nasflow.evaluator.multi_model import merge_evaluators

        device_map = device_map_for(len(self.models))
        module = self.plan().physical_module(device_map)
        merge_evaluators([m.evaluator for m in self.models], device_map).evaluate(module)

    def __repr__(self) -> str:
        return f"MergedTrial(models={[m.model_id for m in self.models]}, status={self.status.value})"
