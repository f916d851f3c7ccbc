"""Spaces, data sets and evaluators shared by the CGO tests.

They live in an importable module (not a test file) because trial workers rebuild graph models
by importing the classes the generated code names.
"""

from __future__ import annotations

import fcntl
import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

import nasflow
from nasflow.evaluator import Classification, DataLoader
from nasflow.nn import LayerChoice, ModelSpace, ParametrizedModule

QUIET: dict[str, Any] = {
    "logger": False, "enable_progress_bar": False, "enable_checkpointing": False, "enable_model_summary": False,
}


class SeededLinear(ParametrizedModule):
    """A linear layer whose initial weights depend only on ``seed``, not on the global RNG.

    A model built alone and the same model built inside a merged trial (after other models) then
    start from identical weights, which makes their training comparable bit for bit.
    """

    def __init__(self, in_features: int, out_features: int, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed * 1000 + in_features * 7 + out_features)
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter((torch.rand(out_features, in_features, generator=generator) * 2 - 1) * bound)
        self.bias = nn.Parameter((torch.rand(out_features, generator=generator) * 2 - 1) * bound)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class DigitsNet(ModelSpace):
    """64 -> width -> activation -> 10, deterministic initialization; 4 models."""

    def __init__(self) -> None:
        super().__init__()
        width = nasflow.choice("width", [32, 64])
        self.fc = SeededLinear(64, width, seed=1)
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
        self.head = SeededLinear(width, 10, seed=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.act(self.fc(x)))


class TinyNet(ModelSpace):
    """8 features -> 3 classes; ``mid`` candidate 2 outputs 5 features, which the head cannot take."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.mid = LayerChoice([nn.ReLU(), nn.Tanh(), nn.Linear(16, 5)], label="mid")
        self.head = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.mid(self.fc(x)))


def digits() -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's 8x8 digits scaled to [0, 1], in a fixed shuffled order: 1400 train, 397 validation."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    features, labels = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))
    train, val = order[:1400], order[1400:]
    return TensorDataset(features[train], labels[train]), TensorDataset(features[val], labels[val])


def digits_evaluator(max_epochs: int = 4, learning_rate: Any = 0.01, **trainer: Any) -> Classification:
    """Classification on digits; no shuffling, so every run sees the same batches in the same order."""
    train, val = digits()
    return Classification(train_dataloaders=DataLoader(train, batch_size=50),
                          val_dataloaders=DataLoader(val, batch_size=400), learning_rate=learning_rate,
                          num_classes=10, max_epochs=max_epochs, **{**QUIET, **trainer})


class CountingDataset(Dataset):
    """Random 8-feature, 3-class data that appends one byte to ``counter`` per item produced.

    Items are produced in trial worker processes, so the count goes through a file (appends under
    a lock). ``key`` names the data (``nasflow_data_key``), so copies compare equal after pickling.
    """

    def __init__(self, counter: str, size: int = 64, key: str = "counting") -> None:
        self.counter = counter
        self.size = size
        self.nasflow_data_key = (key, size)
        generator = torch.Generator().manual_seed(size)
        self.x = torch.randn(size, 8, generator=generator)
        self.y = torch.randint(0, 3, (size,), generator=generator)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        with open(self.counter, "ab") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(b".")
        return self.x[index], self.y[index]


def count(counter: str) -> int:
    """Items produced so far."""
    return os.path.getsize(counter) if os.path.exists(counter) else 0


def tiny_data(size: int = 64, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 8, generator=generator)
    return TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())


def tiny_evaluator(train: Dataset, val: Dataset | None = None, max_epochs: int = 1,
                   learning_rate: Any = 1e-3) -> Classification:
    """A quick classification evaluator over ``train`` (validated on ``val``, default ``train``)."""
    return Classification(train_dataloaders=DataLoader(train, batch_size=16),
                          val_dataloaders=DataLoader(val if val is not None else train, batch_size=64),
                          max_epochs=max_epochs, num_sanity_val_steps=0, learning_rate=learning_rate, **QUIET)


def score_by_size(model: nn.Module) -> None:
    """A FunctionalEvaluator function: reports the parameter count (no data pipeline to share)."""
    nasflow.report_final_result(float(sum(p.numel() for p in model.parameters())))
