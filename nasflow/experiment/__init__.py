"""Experiments: NasExperiment, its config (and NNI's RemoteConfig), the SQLite store, export.

Names load on first use (PEP 562), so readers of the store (``nasflow.experiment.store``, the
dashboard) import without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "NasExperiment", "NasExperimentConfig", "ConfigError", "ExperimentStore", "StoreError", "RemoteConfig",
    "RemoteMachineConfig", "ExecutionEngineConfig", "TrainingServiceEngineConfig", "SequentialEngineConfig",
    "CgoEngineConfig", "ModelFormatConfig", "RawModelFormatConfig", "SimplifiedModelFormatConfig",
    "GraphModelFormatConfig", "TrainingServiceConfig", "LocalConfig", "RayConfig", "UntrustedStoreError",
]

_LAZY = {
    "NasExperiment": ".experiment", "NasExperimentConfig": ".config", "ConfigError": ".config",
    "ExperimentStore": ".store", "StoreError": ".store", "UntrustedStoreError": ".stored",
    **{name: ".config" for name in (
        "ExecutionEngineConfig", "TrainingServiceEngineConfig", "SequentialEngineConfig", "CgoEngineConfig",
        "ModelFormatConfig", "RawModelFormatConfig", "SimplifiedModelFormatConfig", "GraphModelFormatConfig",
        "TrainingServiceConfig", "LocalConfig", "RayConfig")},
    "RemoteConfig": "nasflow.training_service.remote", "RemoteMachineConfig": "nasflow.training_service.remote",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
