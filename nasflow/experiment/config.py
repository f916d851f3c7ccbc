"""``NasExperimentConfig``: what runs where, inferred when not given, checked before anything runs.

``NasExperimentConfig('sequential', 'raw')``, ``NasExperimentConfig('ts', 'simplified', 'local')``,
``NasExperimentConfig('cgo', 'graph', 'local')``; the remaining fields are keywords or attributes
(``config.max_trial_number = 20``). An unknown field, a bad value or a combination that cannot work
raises ``ConfigError`` naming the field and the fix.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from nasflow.training_service import TrainingService

__all__ = ["NasExperimentConfig", "ConfigError", "parse_duration"]

ENGINES = {"sequential": "sequential", "ts": "training_service", "training_service": "training_service", "cgo": "cgo"}
FORMATS = ("raw", "simplified", "graph")
SERVICES = ("local", "ray", "remote")


class ConfigError(ValueError):
    """An invalid experiment config; ``field`` names the culprit."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"NasExperimentConfig.{field_name}: {message}")
        self.field = field_name


def parse_duration(value: Any, field_name: str = "max_experiment_duration") -> float | None:
    """Seconds from a number or a string like ``'90s'``, ``'30m'``, ``'2h'``, ``'1d'``."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value))
        if not match:
            raise ConfigError(field_name, f"{value!r} is not a duration; use seconds or e.g. '30m', '2h'.")
        seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if seconds <= 0:
        raise ConfigError(field_name, f"must be positive, got {value!r}.")
    return seconds


@dataclass
class NasExperimentConfig:
    """Experiment settings. Positional: execution engine, model format, training service."""

    execution_engine: str | None = None
    model_format: str | None = None
    training_service: Any = None
    experiment_name: str | None = None
    max_trial_number: int | None = None
    max_experiment_duration: Any = None
    trial_concurrency: int = 1
    trial_gpu_number: int = 0
    trial_timeout: Any = None
    experiment_working_directory: str = field(
        default_factory=lambda: os.path.join(os.path.expanduser("~"), ".nasflow", "experiments"))
    reuse_mode: bool = False
    gpu_indices: list[int] | None = None
    max_trial_number_per_gpu: int = 1
    threads_per_trial: int | None = None
    max_concurrency_cgo: int | None = None
    batch_waiting_time: float | None = None
    continue_on_failure: bool = True
    progress: bool = True

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _FIELD_NAMES:
            raise _unknown_field(name)
        object.__setattr__(self, name, value)

    # ---- inference ----------------------------------------------------------------------------
    def canonical(self, strategy: Any = None) -> NasExperimentConfig:
        """A copy with every inferable field filled (ARCHITECTURE.md's table), then validated."""
        config = NasExperimentConfig(**{f.name: getattr(self, f.name) for f in fields(self)})
        one_shot = bool(getattr(strategy, "one_shot", False))
        engine = config.execution_engine
        if engine is None:
            engine = "sequential" if one_shot else "training_service"
        if engine not in ENGINES:
            raise ConfigError("execution_engine", f"unknown engine {engine!r}; use 'sequential', 'ts' or 'cgo'.")
        engine = ENGINES[engine]
        config.execution_engine = engine
        if config.model_format is None:
            config.model_format = {"sequential": "raw" if one_shot else "simplified",
                                   "training_service": "simplified", "cgo": "graph"}[engine]
        if engine != "sequential" and config.training_service is None:
            config.training_service = "local"
        config.validate(strategy)
        return config

    # ---- validation ---------------------------------------------------------------------------
    def validate(self, strategy: Any = None) -> None:
        """Raise ``ConfigError`` for the first field that cannot work, saying how to fix it."""
        engine, fmt, service = self.execution_engine, self.model_format, self.training_service
        if engine not in ENGINES.values():
            raise ConfigError("execution_engine", f"unknown engine {engine!r}; use 'sequential', 'ts' or 'cgo'.")
        if fmt not in FORMATS:
            raise ConfigError("model_format", f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
        if getattr(strategy, "one_shot", False):  # one supernet, trained in this process on the space's weights
            name = type(strategy).__name__
            if engine != "sequential":
                raise ConfigError("execution_engine", f"{name} is a one-shot strategy: it trains one supernet in "
                                  "this process. Use NasExperimentConfig('sequential', 'raw'), or leave the config "
                                  "out.")
            if fmt != "raw":
                raise ConfigError("model_format", f"{name} is a one-shot strategy: it trains the space's own weights, "
                                  "which only the raw format keeps. Use NasExperimentConfig('sequential', 'raw'), or "
                                  "leave the config out.")
        if engine == "sequential":
            if service is not None:
                raise ConfigError("training_service", "the sequential engine runs trials in this process; "
                                  "drop training_service, or use NasExperimentConfig('ts', 'simplified', "
                                  f"{service!r}).")
            for name, bad in (("trial_concurrency", self.trial_concurrency != 1),
                              ("trial_gpu_number", self.trial_gpu_number != 0)):
                if bad:
                    raise ConfigError(name, "the sequential engine runs one trial at a time in this process; "
                                      "use NasExperimentConfig('ts', 'simplified') for concurrent trials.")
            for name, bad in (("trial_timeout", self.trial_timeout is not None),
                              ("reuse_mode", bool(self.reuse_mode)),
                              ("gpu_indices", self.gpu_indices is not None),
                              ("max_trial_number_per_gpu", self.max_trial_number_per_gpu != 1),
                              ("threads_per_trial", self.threads_per_trial is not None)):
                if bad:  # settings of trial workers: with no worker they would be silently ignored
                    raise ConfigError(name, "only applies to trials in worker processes, and the sequential "
                                      "engine runs them in this process; remove it, or use "
                                      "NasExperimentConfig('ts', 'simplified').")
        else:
            if fmt == "raw":
                raise ConfigError("model_format", "a raw-format model cannot leave this process (its weights "
                                  "live here); use 'simplified' (or 'graph') with the "
                                  f"{'cgo' if engine == 'cgo' else 'training-service'} engine, or the "
                                  "'sequential' engine for raw.")
            service_name = service if isinstance(service, str) else getattr(service, "platform", None)
            if isinstance(service, TrainingService):  # a ready-made service object is used as it is
                service_name = type(service).__name__
            if isinstance(service, str) and service not in SERVICES:
                raise ConfigError("training_service", f"unknown training service {service!r}; use one of "
                                  f"{', '.join(SERVICES)} or a service config object.")
            if service == "remote":
                raise ConfigError("training_service", "'remote' needs the machines: use RemoteConfig(machine_list="
                                  "[RemoteMachineConfig(host, user=..., ssh_key_file=..., python_path=...)]) "
                                  "from nasflow.experiment.")
            if service_name is None:
                raise ConfigError("training_service", f"{service!r} is neither a service name nor a config "
                                  "with a 'platform' attribute.")
        if engine == "cgo" and fmt != "graph":
            raise ConfigError("model_format", "cross-graph optimization merges graphs, so it needs the graph "
                              "format: NasExperimentConfig('cgo', 'graph', ...).")
        if engine != "cgo":
            for name in ("max_concurrency_cgo", "batch_waiting_time"):
                if getattr(self, name) is not None:
                    raise ConfigError(name, "only applies to the 'cgo' engine; remove it, or use "
                                      "NasExperimentConfig('cgo', 'graph', ...).")
        _positive_int(self, "trial_concurrency")
        _positive_int(self, "max_trial_number_per_gpu")
        _positive_int(self, "max_trial_number", allow_none=True)
        _positive_int(self, "threads_per_trial", allow_none=True)
        _positive_int(self, "max_concurrency_cgo", allow_none=True)
        if not isinstance(self.trial_gpu_number, int) or self.trial_gpu_number < 0:
            raise ConfigError("trial_gpu_number", f"must be a non-negative integer, got {self.trial_gpu_number!r}.")
        parse_duration(self.max_experiment_duration, "max_experiment_duration")
        parse_duration(self.trial_timeout, "trial_timeout")
        if self.batch_waiting_time is not None and (
                not isinstance(self.batch_waiting_time, (int, float)) or self.batch_waiting_time < 0):
            raise ConfigError("batch_waiting_time", f"must be seconds >= 0, got {self.batch_waiting_time!r}.")
        if self.gpu_indices is not None and (
                not isinstance(self.gpu_indices, (list, tuple))
                or not all(isinstance(i, int) and i >= 0 for i in self.gpu_indices)):
            raise ConfigError("gpu_indices", f"must be a list of GPU indices, got {self.gpu_indices!r}.")
        if self.gpu_indices is not None and self.trial_gpu_number > len(self.gpu_indices):
            raise ConfigError("trial_gpu_number", f"asks {self.trial_gpu_number} GPUs per trial but gpu_indices "
                              f"has only {len(self.gpu_indices)}; lower it or list more GPUs.")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        service = self.training_service
        if service is not None and not isinstance(service, str):
            data["training_service"] = service.to_dict() if hasattr(service, "to_dict") else repr(service)
        return data


def _positive_int(config: NasExperimentConfig, name: str, allow_none: bool = False) -> None:
    value = getattr(config, name)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(name, f"must be a positive integer, got {value!r}.")


def _unknown_field(name: str) -> ConfigError:
    close = difflib.get_close_matches(name, _FIELD_NAMES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else f" Known fields: {', '.join(sorted(_FIELD_NAMES))}."
    return ConfigError(name, f"no such field.{hint}")


_FIELD_NAMES = {f.name for f in fields(NasExperimentConfig)}
_dataclass_init = NasExperimentConfig.__init__


@functools.wraps(_dataclass_init)
def _init(self: NasExperimentConfig, *args: Any, **kwargs: Any) -> None:
    """The dataclass ``__init__``, with an unknown keyword reported as a ``ConfigError`` with a hint."""
    for name in kwargs:
        if name not in _FIELD_NAMES:
            raise _unknown_field(name)
    _dataclass_init(self, *args, **kwargs)


NasExperimentConfig.__init__ = _init  # type: ignore[method-assign]
