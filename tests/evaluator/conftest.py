"""Shared fixtures of the evaluator tests: a small data set and single-threaded torch."""

from __future__ import annotations

import pytest
import torch
from support import one_thread  # noqa: F401 - an autouse fixture for these tests
from torch.utils.data import TensorDataset


@pytest.fixture(scope="session")
def digits() -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's 8x8 digits, scaled to [0, 1]: 1400 training and 397 validation images."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    features, labels = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))
    train, val = order[:1400], order[1400:]
    return TensorDataset(features[train], labels[train]), TensorDataset(features[val], labels[val])

