"""Experiments: NasExperiment, its config (and NNI's RemoteConfig), the SQLite store, export."""

from nasflow.training_service.remote import RemoteConfig, RemoteMachineConfig

from .config import (
    CgoEngineConfig,
    ConfigError,
    ExecutionEngineConfig,
    GraphModelFormatConfig,
    LocalConfig,
    ModelFormatConfig,
    NasExperimentConfig,
    RawModelFormatConfig,
    RayConfig,
    SequentialEngineConfig,
    SimplifiedModelFormatConfig,
    TrainingServiceConfig,
    TrainingServiceEngineConfig,
)
from .experiment import NasExperiment
from .store import ExperimentStore, StoreError

__all__ = [
    "NasExperiment", "NasExperimentConfig", "ConfigError", "ExperimentStore", "StoreError", "RemoteConfig",
    "RemoteMachineConfig", "ExecutionEngineConfig", "TrainingServiceEngineConfig", "SequentialEngineConfig",
    "CgoEngineConfig", "ModelFormatConfig", "RawModelFormatConfig", "SimplifiedModelFormatConfig",
    "GraphModelFormatConfig", "TrainingServiceConfig", "LocalConfig", "RayConfig",
]
