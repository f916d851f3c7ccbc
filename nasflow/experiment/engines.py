"""Building the execution engine a config asks for."""

from __future__ import annotations

from pathlib import Path

from nasflow.execution import ExecutionEngine, SequentialExecutionEngine

from .config import NasExperimentConfig, parse_duration

__all__ = ["build_engine"]


def build_engine(config: NasExperimentConfig, log_dir: Path) -> ExecutionEngine:
    """The engine for a canonical (inferred and validated) config."""
    duration = parse_duration(config.max_experiment_duration)
    if config.execution_engine == "sequential":
        return SequentialExecutionEngine(config.max_trial_number, duration, config.continue_on_failure)
    raise NotImplementedError(f"The {config.execution_engine!r} engine is not available yet.")
