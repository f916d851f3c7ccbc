"""Evaluators: FunctionalEvaluator, and the Lightning-based Classification / Regression.

The Lightning-based names are imported on first use: ``import nasflow.evaluator`` stays cheap and
works without the ``lightning`` extra, which only the Lightning evaluators need.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Evaluator, FrozenEvaluator, FunctionalEvaluator, evaluate_model
from .budget import Budgeted
from .traced import DataLoader, Traced

_LAZY = {
    "LightningModule": "lightning", "Trainer": "lightning", "Lightning": "lightning",
    "SupervisedLearningModule": "classification", "ClassificationModule": "classification",
    "RegressionModule": "classification", "Classification": "classification", "Regression": "classification",
    "MergedModel": "merged_model", "MultiOptimizer": "multi_model",
    "MultiModelLightningModule": "multi_model", "MultiModelTrainer": "multi_model", "merge_refusal": "multi_model",
    "merge_evaluators": "multi_model", "check_mergeable": "multi_model", "split_multi_model_metric": "multi_model",
}

__all__ = ["Evaluator", "FunctionalEvaluator", "FrozenEvaluator", "Budgeted", "evaluate_model", "DataLoader", "Traced",
           *_LAZY]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f".{module_name}", __name__)
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] in ("lightning", "pytorch_lightning"):
            raise ImportError(f"nasflow.evaluator.{name} needs Lightning: pip install 'nasflow[lightning]'.") from err
        raise
    value = getattr(module, name)
    globals()[name] = value
    return value
