"""Experiments: NasExperiment, its config, the SQLite store, export."""

from .config import ConfigError, NasExperimentConfig
from .experiment import NasExperiment
from .store import ExperimentStore, StoreError

__all__ = ["NasExperiment", "NasExperimentConfig", "ConfigError", "ExperimentStore", "StoreError"]
