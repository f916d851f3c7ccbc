"""Cross-graph optimization: graph-format models sharing data train as one merged trial."""

from typing import Any

from .logical_plan import DedupInputOptimizer, InputNode, LogicalPlan
from .merged import MergedTrial
from .middleware import CrossGraphOptimization

__all__ = [
    "CrossGraphOptimization", "LogicalPlan", "InputNode", "DedupInputOptimizer", "MergedTrial",
    "MultiModelLightningModule", "MultiModelTrainer",
]


def __getattr__(name: str) -> Any:
    """Lightning is an optional extra: its multi-model classes load on first use."""
    if name in ("MultiModelLightningModule", "MultiModelTrainer"):
        from nasflow.evaluator import multi_model

        return getattr(multi_model, name)
    raise AttributeError(name)
