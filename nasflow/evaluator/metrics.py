"""Metrics for the supervised evaluators, without a torchmetrics dependency.

A metric is either a function ``(preds, target) -> batch mean`` (``accuracy``,
``mean_squared_error``), averaged over an epoch weighted by batch size, or a stateful object with
``update`` / ``compute`` / ``reset`` (a ``torchmetrics.Metric`` works as is), or a class of either
kind, instantiated once per tracker.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["accuracy", "mean_squared_error", "EpochMetrics"]


def accuracy(preds: Tensor, target: Tensor, num_classes: int | None = None) -> Tensor:
    """Fraction of correct predictions in the batch.

    ``preds`` are class scores ``(N, C)`` with integer targets ``(N,)``, or binary logits with the
    target's own shape (positive when the logit is above 0).
    """
    if preds.ndim == target.ndim + 1:
        if num_classes is not None and preds.shape[-1] != num_classes:
            raise ValueError(f"accuracy: the model outputs {preds.shape[-1]} class scores, "
                             f"but num_classes={num_classes}; make the last layer's width match.")
        labels = preds.argmax(dim=-1)
    elif preds.shape == target.shape:
        labels = (preds > 0).to(target.dtype) if preds.is_floating_point() else preds
    else:
        raise ValueError(f"accuracy: predictions of shape {tuple(preds.shape)} do not fit targets of shape "
                         f"{tuple(target.shape)}; expected (N, C) scores for (N,) labels, or equal shapes.")
    return (labels == target).float().mean()


def mean_squared_error(preds: Tensor, target: Tensor) -> Tensor:
    """Mean squared error of the batch (a ``(N,)`` target fits ``(N, 1)`` predictions)."""
    if target.shape != preds.shape and target.numel() == preds.numel():
        target = target.reshape(preds.shape)
    return F.mse_loss(preds, target.to(preds.dtype))


def _is_stateful(metric: Any) -> bool:
    return all(callable(getattr(metric, name, None)) for name in ("update", "compute", "reset"))


def _batch_size(target: Any) -> int:
    if isinstance(target, Tensor):
        return int(target.shape[0]) if target.ndim else 1
    return len(target)


class EpochMetrics:
    """Epoch means of the loss and named metrics for one model, weighted by batch size.

    Accumulating sums ourselves (rather than averaging ``self.log`` values) gives the exact epoch
    accuracy even when the last batch is smaller, and keeps per-model metrics apart in CGO.
    """

    def __init__(self, metrics: Mapping[str, Any] | None = None) -> None:
        self.metrics: dict[str, Any] = {}
        for name, metric in (metrics or {}).items():
            if isinstance(metric, type):
                metric = metric()
            elif _is_stateful(metric):
                metric = copy.deepcopy(metric)  # one state per tracker (validation, test, each model)
            if not callable(metric) and not _is_stateful(metric):
                raise TypeError(f"Metric {name!r} must be a function (preds, target) -> value or an object with "
                                f"update/compute/reset (e.g. a torchmetrics.Metric), got {metric!r}.")
            self.metrics[name] = metric
        self.reset()

    def reset(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._count = 0
        for metric in self.metrics.values():
            if _is_stateful(metric):
                metric.reset()

    def update(self, loss: Tensor, preds: Tensor, target: Tensor) -> None:
        n = _batch_size(target)
        self._count += n
        self._add("loss", loss, n)
        for name, metric in self.metrics.items():
            if _is_stateful(metric):
                if isinstance(metric, torch.nn.Module):
                    metric.to(preds.device)
                metric.update(preds.detach(), target)
            else:
                self._add(name, metric(preds.detach(), target), n)

    def batch_values(self, preds: Tensor, target: Tensor) -> dict[str, Tensor]:
        """The function metrics of one batch (stateful ones are left alone: their state is per epoch)."""
        return {name: torch.as_tensor(metric(preds.detach(), target)) for name, metric in self.metrics.items()
                if not _is_stateful(metric)}

    def _add(self, name: str, value: Any, n: int) -> None:
        value = torch.as_tensor(value).detach().float() * n
        self._sums[name] = self._sums[name] + value if name in self._sums else value

    def compute(self) -> dict[str, float]:
        """``{'loss': ..., name: ...}`` for what was seen since the last reset (empty if nothing)."""
        if self._count == 0:
            return {}
        values = {name: float(total) / self._count for name, total in self._sums.items()}
        for name, metric in self.metrics.items():
            if _is_stateful(metric):
                values[name] = float(metric.compute())
        return values
