"""Building the execution engine (and its training service) a config asks for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasflow.execution import ExecutionEngine, SequentialExecutionEngine
from nasflow.training_service import TrainingService

from .config import ConfigError, NasExperimentConfig, parse_duration

__all__ = ["build_engine", "build_training_service", "WORKER_PRELOAD", "preload_for"]

# Imported once by the local service's fork server instead of by every fresh worker: what a trial
# needs to rebuild and run a model (tens of milliseconds per trial otherwise).
WORKER_PRELOAD = ("torch", "nasflow", "nasflow.space", "nasflow.nn", "nasflow.evaluator", "nasflow.execution")


def preload_for(evaluator: Any) -> tuple[str, ...]:
    """What the fork server imports once: nasflow's trial side plus the nasflow module defining the
    evaluator (for the Lightning evaluators that brings in Lightning, seconds per fresh trial
    otherwise; other experiments do not pay for it at start-up). User modules are left to the trial."""
    module = type(evaluator).__module__ if evaluator is not None else ""
    return (*WORKER_PRELOAD, module) if module.startswith("nasflow.") else WORKER_PRELOAD


def build_training_service(config: NasExperimentConfig, log_dir: Path, evaluator: Any = None) -> TrainingService:
    service = config.training_service
    if isinstance(service, TrainingService):
        return service
    if service == "local":
        from nasflow.training_service.local import LocalTrainingService

        return LocalTrainingService(
            trial_concurrency=config.trial_concurrency, reuse_mode=config.reuse_mode,
            trial_gpu_number=config.trial_gpu_number, gpu_indices=config.gpu_indices,
            max_trial_number_per_gpu=config.max_trial_number_per_gpu,
            threads_per_trial=config.threads_per_trial, log_dir=log_dir, preload=preload_for(evaluator),
        )
    if service == "ray":
        from nasflow.training_service.ray import RayTrainingService

        # A local Ray instance (or the cluster in RAY_ADDRESS); pass RayTrainingService(...) for more control.
        return RayTrainingService(trial_concurrency=config.trial_concurrency, gpus_per_trial=config.trial_gpu_number,
                                  max_trials_per_gpu=config.max_trial_number_per_gpu, log_dir=log_dir)
    if getattr(service, "platform", None) == "remote" and hasattr(service, "machine_list"):
        from nasflow.training_service.remote import RemoteTrainingService

        return RemoteTrainingService(service, trial_concurrency=config.trial_concurrency,
                                     gpus_per_trial=config.trial_gpu_number, log_dir=log_dir)
    raise ConfigError("training_service", f"cannot build a training service from {service!r}; use 'local', "
                      "'ray', a RemoteConfig or a TrainingService object.")


def build_engine(config: NasExperimentConfig, log_dir: Path, evaluator: Any = None) -> ExecutionEngine:
    """The engine for a canonical (inferred and validated) config."""
    duration = parse_duration(config.max_experiment_duration)
    if config.execution_engine == "sequential":
        return SequentialExecutionEngine(config.max_trial_number, duration, config.continue_on_failure)
    from nasflow.execution.training_service import TrainingServiceExecutionEngine

    cgo = config.execution_engine == "cgo"
    engine = TrainingServiceExecutionEngine(
        build_training_service(config, log_dir, evaluator), trial_concurrency=config.trial_concurrency,
        max_model_count=None if cgo else config.max_trial_number, max_duration=duration,
        trial_timeout=parse_duration(config.trial_timeout, "trial_timeout"), log_dir=log_dir,
        trial_gpu_number=config.trial_gpu_number,
    )
    if not cgo:
        return engine
    from nasflow.execution.cgo import CrossGraphOptimization

    waiting = 60.0 if config.batch_waiting_time is None else float(config.batch_waiting_time)
    return CrossGraphOptimization(engine, max_concurrency_cgo=config.max_concurrency_cgo,
                                  batch_waiting_time=waiting, max_model_count=config.max_trial_number)
