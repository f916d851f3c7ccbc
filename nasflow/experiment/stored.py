"""What a reader gets from a store without unpickling anything: models as recorded, the config, and
a JSON description of the setup (strategy, format, evaluator).

A store's pickles (setup, strategy state, model payloads) can run any code when loaded, so viewing,
listing and exporting samples or code use only these; rebuilding a model's module needs the user's
code and so the pickled setup, which only resume or ``NasExperiment.view(..., trusted=True)`` loads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import Any

from torch import nn

from nasflow.mutable import LabeledMutable, Sample
from nasflow.mutable.base import IsLeaf
from nasflow.space import ExecutableModelSpace, MetricDirection, ModelStatus

from .config import NasExperimentConfig
from .store import ModelRecord

__all__ = ["StoredModel", "UntrustedStoreError", "apply_record", "config_from_record", "describe",
           "untrusted"]


class UntrustedStoreError(PermissionError):
    """Rebuilding models means unpickling the store's setup, which was not allowed."""


def untrusted(experiment_id: str, what: str) -> UntrustedStoreError:
    return UntrustedStoreError(
        f"{what} needs your model space and evaluator, which the store of experiment {experiment_id} keeps pickled; "
        "unpickling runs whatever code the file holds, so it is not done for a viewed experiment. If you trust the "
        f"store (you wrote it), open it with NasExperiment.view({experiment_id!r}, trusted=True); samples "
        "(formatter='dict') and code (formatter='code') need no unpickling."
    )


def describe(space: ExecutableModelSpace, strategy: Any, config: NasExperimentConfig) -> dict[str, Any]:
    """The setup in JSON, for readers (meta ``DESCRIPTION_KEY``): class names, never objects."""
    evaluator = getattr(space, "evaluator", None)
    return {
        "strategy": type(strategy).__name__,
        "strategy_module": type(strategy).__module__,
        "one_shot": bool(getattr(strategy, "one_shot", False)),
        "model_format": str(config.model_format),
        "evaluator": type(evaluator).__name__ if evaluator is not None else None,
    }


def config_from_record(data: Mapping[str, Any]) -> NasExperimentConfig | None:
    """The config as recorded in JSON (a training service object is its description); None if it
    cannot be rebuilt (e.g. recorded by another nasflow)."""
    known = {f.name for f in fields(NasExperimentConfig)}
    try:
        return NasExperimentConfig(**{k: v for k, v in data.items() if k in known})
    except (TypeError, ValueError):
        return None


def apply_record(model: ExecutableModelSpace, record: ModelRecord) -> ExecutableModelSpace:
    """Give a model the id, status and metrics a store recorded for it."""
    model.model_id = record.model_id
    model.status = ModelStatus(record.status)
    for value in record.metrics.intermediates:  # the store keeps dicts whole; Metrics keeps their numbers
        model.metrics.add_intermediate(value)
    model.metrics.final = record.metrics.final
    return model


class StoredModel(ExecutableModelSpace):
    """A model as the store recorded it (id, sample, status, metrics), without its module: listing
    a viewed experiment needs no unpickling. ``executable_model()`` explains how to get the module."""

    def __init__(self, record: ModelRecord, experiment_id: str, metric_direction: MetricDirection = "maximize") -> None:
        self.sample = dict(record.sample)
        self.evaluator = None
        self.format = record.format
        self._experiment_id = experiment_id
        self._metric_direction = metric_direction
        apply_record(self, record)

    @property
    def metric_direction(self) -> MetricDirection:
        """The direction the experiment recorded (its evaluator is not loaded)."""
        return self._metric_direction

    @classmethod
    def from_model(cls, model_space: nn.Module, evaluator: Any = None, **kwargs: Any) -> ExecutableModelSpace:
        raise TypeError("StoredModel is what a store recorded; it is not a model format.")

    def executable_model(self) -> nn.Module:
        raise untrusted(self._experiment_id, f"The module of model {self.model_id}")

    def _space_leaf_mutables(self, is_leaf: IsLeaf) -> Iterator[LabeledMutable]:
        return iter(())

    def _freeze_model(self, sample: Sample) -> ExecutableModelSpace:
        raise untrusted(self._experiment_id, "Freezing a model")

    def _space_repr(self) -> str:
        return f"StoredModel(experiment={self._experiment_id!r}, format={self.format!r})"
