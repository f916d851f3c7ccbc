"""Training services: where trials run (local worker pool; Ray and remote machines).

The Ray-based services load lazily, so nasflow imports without Ray installed; using them without it
raises an ImportError with the install command.
"""

from typing import Any

from .base import TrainingService, TrialEndStatus, TrialEvent, TrialSpec
from .local import LocalTrainingService
from .payload import run_payload

__all__ = [
    "TrainingService", "TrialSpec", "TrialEvent", "TrialEndStatus", "LocalTrainingService", "run_payload",
    "RayTrainingService", "RayClusterError", "RemoteTrainingService", "RemoteConfig", "RemoteMachineConfig",
    "RemoteMachineError",
]

_LAZY = {
    "RayTrainingService": "ray", "RayClusterError": "ray",
    "RemoteTrainingService": "remote", "RemoteConfig": "remote", "RemoteMachineConfig": "remote",
    "RemoteMachineError": "remote",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
