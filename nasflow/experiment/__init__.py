"""Experiments: NasExperiment, its config (and NNI's RemoteConfig), the SQLite store, export."""

from nasflow.training_service.remote import RemoteConfig, RemoteMachineConfig

from .config import ConfigError, NasExperimentConfig
from .experiment import NasExperiment
from .store import ExperimentStore, StoreError

__all__ = [
    "NasExperiment", "NasExperimentConfig", "ConfigError", "ExperimentStore", "StoreError", "RemoteConfig",
    "RemoteMachineConfig",
]
