"""NNI's ``nni.nas.evaluator.pytorch`` module path: the Lightning evaluators (``pip install 'nasflow[lightning]'``)."""

from typing import Any

__all__ = ["Lightning", "LightningModule", "Trainer", "DataLoader", "Classification", "Regression",
           "ClassificationModule", "RegressionModule", "SupervisedLearningModule"]


def __getattr__(name: str) -> Any:
    import nasflow.evaluator

    if name in __all__:
        return getattr(nasflow.evaluator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
