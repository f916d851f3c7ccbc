"""NNI's ``nni.nas.evaluator.pytorch.lightning`` module path (the Lightning evaluators)."""

from nasflow.evaluator.classification import (
    Classification,
    ClassificationModule,
    Regression,
    RegressionModule,
    SupervisedLearningModule,
)
from nasflow.evaluator.lightning import Lightning, LightningModule, Trainer
from nasflow.evaluator.traced import DataLoader

__all__ = ["Lightning", "LightningModule", "Trainer", "DataLoader", "Classification", "Regression",
           "ClassificationModule", "RegressionModule", "SupervisedLearningModule"]
