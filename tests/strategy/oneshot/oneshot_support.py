"""Spaces, data and a plain training loop shared by the one-shot tests (and their subprocess scripts)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

import nasflow
from nasflow.evaluator import Classification, DataLoader
from nasflow.nn import (
    Cell,
    InputChoice,
    LayerChoice,
    ModelSpace,
    MutableBatchNorm2d,
    MutableConv2d,
    MutableLinear,
    Repeat,
)

QUIET: dict[str, Any] = {
    "logger": False, "enable_progress_bar": False, "enable_checkpointing": False, "enable_model_summary": False,
    "num_sanity_val_steps": 0,
}


class Zero(nn.Module):
    """DARTS's "none" operation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0


class MlpSpace(ModelSpace):
    """Digits MLP whose choices matter: width, activation, a block that may be zero, and a skip."""

    def __init__(self, widths: tuple[int, ...] = (8, 32)) -> None:
        super().__init__()
        width = nasflow.choice("width", list(widths)) if len(widths) > 1 else widths[0]
        self.stem = MutableLinear(64, width)
        self.act = LayerChoice({"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "zero": Zero()}, label="act")
        self.block = Repeat(lambda i: nn.Sequential(MutableLinear(width, width), nn.ReLU()), depth=(1, 2),
                            label="depth")
        self.skip = InputChoice(2, 1, label="skip")
        self.head = MutableLinear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.stem(x))
        return self.head(self.skip([h, self.block(h)]))


class ConvSpace(ModelSpace):
    """Every primitive a supernet converts: channels, kernel size (with padding as an expression), BatchNorm,
    a layer choice, a searched depth, a cell (loose ends) and an input choice."""

    def __init__(self, merge_op: str = "all") -> None:
        super().__init__()
        channels = nasflow.choice("channels", [4, 8])
        kernel = nasflow.choice("kernel", [3, 5])
        self.conv = MutableConv2d(1, channels, kernel, padding=kernel // 2)
        self.bn = MutableBatchNorm2d(channels)
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
        self.body = Repeat(lambda i: nn.Sequential(MutableConv2d(channels, channels, 3, padding=1),
                                                   MutableBatchNorm2d(channels), nn.ReLU()),
                           depth=(0, 2), label="depth")
        self.cell = Cell([lambda: nn.Identity(), lambda: nn.ReLU(), lambda: nn.Tanh()], num_nodes=2,
                         merge_op=merge_op, label="cell")  # type: ignore[arg-type]
        self.skip = InputChoice(2, 1, label="skip")
        self.head = MutableLinear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn(self.conv(x.view(-1, 1, 8, 8))))
        body = self.body(h)
        cell = self.cell(body)
        pooled = self.skip([h, cell[:, : h.shape[1]]]).mean((2, 3))
        return self.head(pooled)


def digits(n_train: int = 1000) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's digits in [0, 1]: ``n_train`` training images, the last 397 for validation."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    features, labels = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))
    train, val = order[:n_train], order[-397:]
    return TensorDataset(features[train], labels[train]), TensorDataset(features[val], labels[val])


def evaluator(data: tuple[TensorDataset, TensorDataset], max_epochs: int = 3, **kwargs: Any) -> Classification:
    train, val = data
    return Classification(train_dataloaders=DataLoader(train, batch_size=50, shuffle=True),
                          val_dataloaders=DataLoader(val, batch_size=200), max_epochs=max_epochs,
                          **{"learning_rate": 1e-2, **QUIET, **kwargs})


def retrain(model: nn.Module, data: tuple[TensorDataset, TensorDataset], epochs: int = 8, seed: int = 0) -> float:
    """Train ``model`` from fresh weights with Adam (fixed seed), return its validation accuracy."""
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    (x, y), (vx, vy) = data[0].tensors, data[1].tensors
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x), generator=generator).split(50):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        return (model(vx).argmax(1) == vy).float().mean().item()
