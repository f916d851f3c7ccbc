"""``MergedTrial``: the one trial the engine below runs for a trial's logical plan, and its physical plan.

In the worker, the physical plan follows the logical one: every model is built from its graph,
placed on the devices the trial was given (:func:`place`), its batch groups become vectorized
modules, and one merged evaluator trains them all (each model by its own evaluator's module).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from nasflow.mutable import LabeledMutable, Sample
from nasflow.space import ExecutableModelSpace, ModelStatus

from .logical_plan import LogicalPlan, unwrap_budget

__all__ = ["MergedTrial", "place"]

_NAMED_IN_TRIAL_ID = 4  # model ids spelled out in a merged trial's name; the rest are counted


def place(models: Sequence[nn.Module], batch_groups: Sequence[Sequence[int]],
          gpu_count: int | None = None) -> dict[int, torch.device]:
    """Model index -> device: CPU without GPUs; else each batch group (kept on one GPU) and each other
    model goes, largest first by parameter count, to the GPU with the fewest parameters so far."""
    gpus = torch.cuda.device_count() if gpu_count is None else gpu_count
    if gpus == 0:
        return {index: torch.device("cpu") for index in range(len(models))}
    grouped = {i for group in batch_groups for i in group}
    units = [list(group) for group in batch_groups] + [[i] for i in range(len(models)) if i not in grouped]
    size = [sum(p.numel() for p in model.parameters()) for model in models]
    load = [0] * gpus
    device_map = {}
    for unit in sorted(units, key=lambda u: (-sum(size[i] for i in u), min(u))):
        gpu = min(range(gpus), key=lambda g: (load[g], g))
        load[gpu] += sum(size[i] for i in unit)
        device_map.update({i: torch.device("cuda", gpu) for i in unit})
    return device_map


class MergedTrial(ExecutableModelSpace):
    """Trains the models of one trial's logical plan (graph format, sharing data) as one module.

    It travels to a worker like any model (graphs as JSON, evaluators as recipes, the plan's batch
    groups as indices); there ``execute`` runs the physical plan, reporting one entry per model.
    Batch groups placed on CPU train merged without batching unless ``batch_on_cpu``.
    Its trial is named after its models (``3+4+5``), and it borrows its first model's id, so it
    takes no number from the models' sequence.
    """

    def __init__(self, plan: LogicalPlan, batch_on_cpu: bool = False) -> None:
        if len(plan.inputs) != 1:
            raise ValueError(f"A merged trial reads one shared input; this plan has {len(plan.inputs)}.")
        self.models = plan.models
        self.batch_groups = plan.batch_groups
        self.batch_on_cpu = batch_on_cpu
        self.evaluator = None
        self.sample = {"merged_models": [m.model_id for m in self.models]}
        self.status = ModelStatus.Frozen
        self.model_id = self.models[0].model_id

    @property
    def trial_name(self) -> str:
        ids = [str(m.model_id) for m in self.models]
        if len(ids) <= _NAMED_IN_TRIAL_ID:
            return "+".join(ids)
        return "+".join(ids[:_NAMED_IN_TRIAL_ID - 1]) + f"+{len(ids) - _NAMED_IN_TRIAL_ID + 1}more"

    @classmethod
    def from_model(cls, model_space: nn.Module, evaluator: Any = None, **kwargs: Any) -> MergedTrial:
        raise TypeError("A MergedTrial is made by the CGO middleware from frozen models, not from a space.")

    def _space_leaf_mutables(self, is_leaf: Any) -> Iterator[LabeledMutable]:
        return iter(())

    def _freeze_model(self, sample: Sample) -> ExecutableModelSpace:
        raise TypeError("A MergedTrial is already a frozen group of models.")

    def executable_model(self) -> nn.Module:
        """The physical module: every model built and placed on this process's GPUs; batch groups
        batched where they land on a GPU (on CPU too with ``batch_on_cpu``)."""
        from nasflow.evaluator.merged_model import MergedModel

        models = [m.executable_model() for m in self.models]
        device_map = place(models, self.batch_groups)
        groups = [g for g in self.batch_groups if self.batch_on_cpu or device_map[g[0]].type != "cpu"]
        return MergedModel(models, groups, device_map)

    def execute(self) -> None:
        from nasflow.evaluator.multi_model import merge_evaluators
        from nasflow.runtime import budget_scope

        evaluators, budgets = zip(*(unwrap_budget(m.evaluator) for m in self.models), strict=True)
        if len(set(budgets)) > 1:
            raise ValueError(f"Models of one merged trial must share their training budget, got {list(budgets)}.")
        module = self.executable_model()
        merged = merge_evaluators(list(evaluators), device=module.device_map.get(0, torch.device("cpu")))
        with contextlib.nullcontext() if budgets[0] is None else budget_scope(budgets[0]):
            merged.evaluate(module)

    def __repr__(self) -> str:
        return (f"MergedTrial(models={[m.model_id for m in self.models]}, batch_groups={self.batch_groups}, "
                f"status={self.status.value})")
