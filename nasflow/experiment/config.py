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
from dataclasses import MISSING as MISSING_FIELD
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from nasflow.training_service import TrainingService

from .config_objects import (
    CgoEngineConfig,
    ExecutionEngineConfig,
    GraphModelFormatConfig,
    LocalConfig,
    ModelFormatConfig,
    NamedConfig,
    RawModelFormatConfig,
    RayConfig,
    SequentialEngineConfig,
    SimplifiedModelFormatConfig,
    TrainingServiceConfig,
    TrainingServiceEngineConfig,
    config_object,
)

__all__ = ["NasExperimentConfig", "ConfigError", "parse_duration", "ExecutionEngineConfig",
           "TrainingServiceEngineConfig", "SequentialEngineConfig", "CgoEngineConfig", "ModelFormatConfig",
           "RawModelFormatConfig", "SimplifiedModelFormatConfig", "GraphModelFormatConfig", "TrainingServiceConfig",
           "LocalConfig", "RayConfig"]

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
        name = _ALIASES.get(name, name)
        if name not in _FIELD_NAMES:
            raise _unknown_field(name)
        if name in _OBJECT_FIELDS:
            value = config_object(name, value)
        self.__dict__.setdefault("_inferred", set()).discard(name)  # the user's choice now
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        if name in _ALIASES:
            return getattr(self, _ALIASES[name])
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # ---- inference ----------------------------------------------------------------------------
    @classmethod
    def default(cls, model_space: Any = None, evaluator: Any = None, strategy: Any = None) -> NasExperimentConfig:
        """The config nasflow infers for this strategy (NNI's ``NasExperimentConfig.default``).

        Edit it before running (``config.trial_concurrency = 4``); fields you leave alone are inferred
        again at ``run()``, so changing the engine re-infers the format and service that go with it.
        """
        config = cls().canonical(strategy)
        inferred = {name for name in ("execution_engine", "model_format", "training_service")
                    if getattr(cls(), name) is None}
        object.__setattr__(config, "_inferred", inferred)
        return config

    def canonical(self, strategy: Any = None) -> NasExperimentConfig:
        """A copy with every inferable field filled (ARCHITECTURE.md's table), then validated."""
        config = NasExperimentConfig(**{f.name: getattr(self, f.name) for f in fields(self)})
        for name in self.__dict__.get("_inferred", ()):  # inferred before: inferred again for the fields set now
            object.__setattr__(config, name, None)
        one_shot = bool(getattr(strategy, "one_shot", False))
        engine = config.execution_engine
        if engine is None:
            engine = "sequential" if one_shot else "training_service"
        if engine not in ENGINES:
            raise ConfigError("execution_engine", f"unknown engine {engine!r}; use 'sequential', 'ts' or 'cgo'.")
        config.execution_engine = config_object("execution_engine", ENGINES[engine]) \
            if not isinstance(engine, NamedConfig) else engine
        engine = ENGINES[engine]
        if config.model_format is None:
            config.model_format = {"sequential": "raw" if one_shot else "simplified",
                                   "training_service": "simplified", "cgo": "graph"}[engine]
        if engine != "sequential" and config.training_service is None:
            config.training_service = "local"
        for name in self.__dict__.get("_inferred", ()):  # the same inference: keep the object (and its edits)
            before, now = getattr(self, name), getattr(config, name)
            if before is not None and now is not None and str(before) == str(now):
                object.__setattr__(config, name, before)
        config._absorb_objects()
        config.validate(strategy)
        return config

    def _absorb_objects(self) -> None:
        """Settings given on NNI's config objects become the experiment's (unless set there too)."""
        engine, service = self.execution_engine, self.training_service
        moves: list[tuple[str, Any]] = []
        if isinstance(engine, SequentialEngineConfig):
            moves += [("continue_on_failure", engine.continue_on_failure), ("max_trial_number", engine.max_model_count),
                      ("max_experiment_duration", engine.max_duration)]
        if isinstance(engine, CgoEngineConfig):
            moves += [("max_concurrency_cgo", engine.max_concurrency_cgo),
                      ("batch_waiting_time", engine.batch_waiting_time)]
        if isinstance(service, LocalConfig):
            moves += [("gpu_indices", service.gpu_indices), ("reuse_mode", service.reuse_mode),
                      ("max_trial_number_per_gpu", service.max_trial_number_per_gpu),
                      ("trial_gpu_number", service.trial_gpu_number)]
        for name, value in moves:
            if value is not None and getattr(self, name) == _DEFAULTS[name]:
                object.__setattr__(self, name, value)

    @property
    def dummy_input(self) -> Any:
        """The graph format's ``dummy_input`` (``GraphModelFormatConfig(dummy_input=...)``), if any."""
        fmt = self.model_format
        return fmt.dummy_input if isinstance(fmt, GraphModelFormatConfig) else None

    def json(self) -> dict[str, Any]:
        """NNI's JSON form of the config: camelCase keys, the engine, format and service as objects."""
        data: dict[str, Any] = {"experimentType": "nas"}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, NamedConfig):
                value = value.json()
            elif f.name == "training_service" and value is not None and hasattr(value, "to_dict"):
                value = value.to_dict()
            elif f.name == "training_service" and value is not None and not isinstance(value, str):
                value = repr(value)
            if value is not None:
                data[_camel(f.name)] = value
        return data

    # ---- validation ---------------------------------------------------------------------------
    def validate(self, strategy: Any = None) -> None:
        """Raise ``ConfigError`` for the first field that cannot work, saying how to fix it."""
        engine, fmt, service = self.execution_engine, self.model_format, self.training_service
        if engine not in ENGINES.values():
            raise ConfigError("execution_engine", f"unknown engine {engine!r}; use 'sequential', 'ts' or 'cgo'.")
        if fmt not in FORMATS:
            raise ConfigError("model_format", f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
        if getattr(strategy, "one_shot", False) and (engine != "sequential" or fmt != "raw"):
            raise ConfigError("execution_engine", "one-shot strategies train one supernet in process: "
                              "use NasExperimentConfig('sequential', 'raw') or leave the config out.")
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


_NNI_ONLY = {  # NNI fields with no meaning here, and what to do instead
    "tuner": "HPO tuners are not part of nasflow; search hyperparameters by giving the evaluator mutable arguments "
             "(FunctionalEvaluator(fn, lr=nasflow.choice('lr', [...]))) and pick a strategy in NasExperiment",
    "assessor": "assessors are strategy middlewares here: wrap the strategy, e.g. Chain(strategy, MedianStop())",
    "advisor": "advisors are not part of nasflow; pass a strategy to NasExperiment",
    "search_space": "the search space is the model space (and the evaluator's mutable arguments), not a config field",
    "trial_command": "nasflow starts trials itself; nothing to configure",
    "trial_code_directory": "trials import your code from where it is installed or from the script that runs",
    "nni_manager_ip": "there is no NNI manager; `nasflow show ID` and the dashboard read the experiment's store",
    "use_annotation": "NNI annotations are not supported; use nasflow.choice and the nasflow.nn modules",
    "tuner_gpu_indices": "strategies run in this process; trial GPUs are gpu_indices",
    "log_level": "set Python logging's level for 'nasflow' (logging.getLogger('nasflow').setLevel(...))",
    "debug": "run NasExperimentConfig('sequential', 'simplified') to debug trials in this process",
    "experiment_type": "every nasflow experiment is a NAS experiment",
}


def _unknown_field(name: str) -> ConfigError:
    if name in _NNI_ONLY:
        return ConfigError(name, f"NNI's {name!r} is not a nasflow setting: {_NNI_ONLY[name]}.")
    close = difflib.get_close_matches(name, _FIELD_NAMES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else f" Known fields: {', '.join(sorted(_FIELD_NAMES))}."
    return ConfigError(name, f"no such field.{hint}")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_FIELD_NAMES = {f.name for f in fields(NasExperimentConfig)}
_OBJECT_FIELDS = ("execution_engine", "model_format", "training_service")
_ALIASES = {"max_trial_duration": "trial_timeout", "training_service_platform": "training_service"}
_DEFAULTS = {f.name: (f.default_factory() if f.default_factory is not MISSING_FIELD else f.default)  # type: ignore[misc]
             for f in fields(NasExperimentConfig)}
_dataclass_init = NasExperimentConfig.__init__


@functools.wraps(_dataclass_init)
def _init(self: NasExperimentConfig, *args: Any, **kwargs: Any) -> None:
    """The dataclass ``__init__``, with an unknown keyword reported as a ``ConfigError`` with a hint."""
    kwargs = {_ALIASES.get(name, name): value for name, value in kwargs.items()}
    for name in kwargs:
        if name not in _FIELD_NAMES:
            raise _unknown_field(name)
    _dataclass_init(self, *args, **kwargs)


NasExperimentConfig.__init__ = _init  # type: ignore[method-assign]
