"""The logical plan of a merged trial: which models train together and what they read.

A plan starts with one input per model (as if each loaded its own data); ``DedupInputOptimizer``
collapses inputs that read the same data pipeline into one, so each batch is produced once and fed
to every model. The physical form of a plan is one ``MergedModel`` module with N outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nasflow.space import ExecutableModelSpace

__all__ = ["LogicalPlan", "InputNode", "DedupInputOptimizer", "data_signature", "device_map_for"]


def data_signature(model: ExecutableModelSpace) -> Any:
    """What a model's evaluator reads (dataloaders, datamodule, trainer settings), or None when its
    evaluator cannot tell, in which case the model never merges."""
    signature = getattr(model.evaluator, "data_signature", None)
    return signature() if callable(signature) else None


@dataclass
class InputNode:
    """One data pipeline and the models (plan indices) it feeds."""

    signature: Any
    consumers: list[int] = field(default_factory=list)


@dataclass
class LogicalPlan:
    """Models to train in one trial, and the input nodes that feed them."""

    models: list[ExecutableModelSpace]
    inputs: list[InputNode] = field(default_factory=list)

    @classmethod
    def from_models(cls, models: Sequence[ExecutableModelSpace]) -> LogicalPlan:
        """The naive plan: every model reads its own input."""
        return cls(list(models), [InputNode(data_signature(m), [i]) for i, m in enumerate(models)])

    def physical_module(self, device_map: dict[int, torch.device] | None = None) -> nn.Module:
        """The merged module: every model built from its graph, all fed by the plan's single input."""
        if len(self.inputs) != 1:
            raise ValueError(f"A merged trial needs one shared input, the plan has {len(self.inputs)}; "
                             "run DedupInputOptimizer first (models with different data cannot merge).")
        from nasflow.evaluator.multi_model import MergedModel

        return MergedModel([m.executable_model() for m in self.models], device_map)


class DedupInputOptimizer:
    """Merge input nodes that read the same data into one (the point of cross-graph optimization)."""

    def convert(self, plan: LogicalPlan) -> LogicalPlan:
        merged: list[InputNode] = []
        for node in plan.inputs:
            same = next((m for m in merged if node.signature is not None and m.signature == node.signature), None)
            if same is None:
                merged.append(InputNode(node.signature, list(node.consumers)))
            else:
                same.consumers.extend(node.consumers)
        return LogicalPlan(plan.models, merged)


def device_map_for(n_models: int, gpu_count: int | None = None) -> dict[int, torch.device]:
    """Round robin over the GPUs this trial sees (its CUDA_VISIBLE_DEVICES); CPU when there are none."""
    gpus = torch.cuda.device_count() if gpu_count is None else gpu_count
    if gpus == 0:
        return {index: torch.device("cpu") for index in range(n_models)}
    return {index: torch.device("cuda", index % gpus) for index in range(n_models)}
