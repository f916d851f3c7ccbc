"""Cross-graph optimization: graph-format models sharing data train as merged (and batched) trials."""

from typing import Any

from .logical_plan import BatchingOptimizer, DedupInputOptimizer, InputNode, LogicalPlan, optimize
from .merged import MergedTrial, place
from .middleware import CrossGraphOptimization

__all__ = [
    "CrossGraphOptimization", "LogicalPlan", "InputNode", "DedupInputOptimizer", "BatchingOptimizer", "optimize",
    "MergedTrial", "place", "MultiModelLightningModule", "MultiModelTrainer",
]


def __getattr__(name: str) -> Any:
    """Lightning is an optional extra: its multi-model classes load on first use."""
    if name in ("MultiModelLightningModule", "MultiModelTrainer"):
        from nasflow.evaluator import multi_model

        return getattr(multi_model, name)
    raise AttributeError(name)
