"""Shared fixtures of the evaluator tests: a small data set and single-threaded torch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch.utils.data import TensorDataset


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The machine's cores are shared: tiny models run as fast on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits() -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's 8x8 digits, scaled to [0, 1]: 1400 training and 397 validation images."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    features, labels = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))
    train, val = order[:1400], order[1400:]
    return TensorDataset(features[train], labels[train]), TensorDataset(features[val], labels[val])

