"""NNI's config objects for the execution engine, the model format and the local training service.

Each is a ``str`` (its canonical nasflow name: ``'training_service'``, ``'simplified'``,
``'local'``) carrying NNI's fields, so ``config.execution_engine == 'sequential'`` and
``config.execution_engine.name == 'ts'`` both work, and the store records the plain name.
``ExecutionEngineConfig(name='ts')`` builds the subclass that ``name`` selects, as in NNI.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "NamedConfig", "ExecutionEngineConfig", "TrainingServiceEngineConfig", "SequentialEngineConfig",
    "CgoEngineConfig", "ModelFormatConfig", "RawModelFormatConfig", "SimplifiedModelFormatConfig",
    "GraphModelFormatConfig", "TrainingServiceConfig", "LocalConfig", "RayConfig", "config_object",
]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class NamedConfig(str):
    """A named config: the ``str`` value is nasflow's name, ``name`` is NNI's, the rest are fields."""

    name: str = ""
    value: ClassVar[str] = ""
    fields: ClassVar[dict[str, Any]] = {}  # NNI's fields and their defaults
    registry: ClassVar[dict[str, type[NamedConfig]]]  # subclasses by name, one per config family

    def __new__(cls, name: str | None = None, **fields: Any) -> NamedConfig:
        target = cls
        if name is not None and name != cls.name:
            target = cls.registry.get(name)  # type: ignore[assignment]
            if target is None or not issubclass(target, cls):
                known = ", ".join(sorted(cls.registry))
                raise ValueError(f"Invalid {cls.__name__} subclass name {name!r}; use one of {known}.")
        obj = str.__new__(target, target.value)
        for key, default in target.fields.items():
            object.__setattr__(obj, key, default)
        for key, value in fields.items():
            setattr(obj, key, value)
        return obj

    def __init__(self, name: str | None = None, **fields: Any) -> None:
        str.__init__(self)

    def __setattr__(self, key: str, value: Any) -> None:
        if key not in type(self).fields:
            known = ", ".join(type(self).fields) or "none"
            raise AttributeError(f"{type(self).__name__} has no field {key!r} (its fields: {known}).")
        object.__setattr__(self, key, value)

    def __reduce__(self) -> tuple:
        return type(self), (None,), None, None, iter(self.field_values().items())

    def __setitem__(self, key: str, value: Any) -> None:  # used by __reduce__'s dict items on unpickling
        setattr(self, key, value)

    def __eq__(self, other: object) -> bool:
        """Equal to nasflow's name and to NNI's (``'training_service'`` and ``'ts'``)."""
        if isinstance(other, NamedConfig):
            return str.__eq__(self, other)
        return isinstance(other, str) and (str.__eq__(self, other) or (bool(self.name) and other == self.name))

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = str.__hash__

    def field_values(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in type(self).fields}

    def json(self) -> dict[str, Any]:
        """NNI's JSON form: ``{'name': 'ts', ...}`` with camelCase keys, unset fields left out."""
        data = {"name": self.name} if self.name else {}
        data.update({_camel(k): v for k, v in self.field_values().items() if v is not None})
        return data

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.field_values()}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.field_values().items())
        return f"{type(self).__name__}({fields})" if self.name == "" else \
            f"{type(self).__name__}(name={self.name!r}{', ' + fields if fields else ''})"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.fields = {**getattr(cls, "fields", {}), **cls.__dict__.get("own_fields", {})}
        if "name" in cls.__dict__ and cls.name:
            cls.registry[cls.name] = cls
            for alias in cls.__dict__.get("aliases", ()):
                cls.registry[alias] = cls


class ExecutionEngineConfig(NamedConfig):
    """How trials run (NNI's base class, for ``isinstance`` checks)."""

    registry: ClassVar[dict[str, type[NamedConfig]]] = {}


class TrainingServiceEngineConfig(ExecutionEngineConfig):
    """Trials run on a training service (local worker processes, Ray, remote machines)."""

    name = "ts"
    value = "training_service"
    aliases = ("training_service",)


class SequentialEngineConfig(ExecutionEngineConfig):
    """Trials run one after another in this process (one-shot, debugging)."""

    name = "sequential"
    value = "sequential"
    own_fields: ClassVar[dict[str, Any]] = {"continue_on_failure": None, "max_model_count": None,
                                            "max_duration": None}


class CgoEngineConfig(ExecutionEngineConfig):
    """Cross-graph optimization: models sharing a dataset train as one merged trial."""

    name = "cgo"
    value = "cgo"
    own_fields: ClassVar[dict[str, Any]] = {"max_concurrency_cgo": None, "batch_waiting_time": None}


class ModelFormatConfig(NamedConfig):
    """What a model is while it travels and trains (NNI's base class)."""

    registry: ClassVar[dict[str, type[NamedConfig]]] = {}


class RawModelFormatConfig(ModelFormatConfig):
    name = "raw"
    value = "raw"


class SimplifiedModelFormatConfig(ModelFormatConfig):
    name = "simplified"
    value = "simplified"


class GraphModelFormatConfig(ModelFormatConfig):
    """The graph IR; ``dummy_input`` lets the conversion check itself on a real input."""

    name = "graph"
    value = "graph"
    own_fields: ClassVar[dict[str, Any]] = {"dummy_input": None}


class TrainingServiceConfig(NamedConfig):
    """Where trials run (NNI's ``TrainingServiceConfig``); ``platform`` is its name."""

    registry: ClassVar[dict[str, type[NamedConfig]]] = {}

    @property
    def platform(self) -> str:
        return self.name

    def json(self) -> dict[str, Any]:
        data = super().json()
        data["platform"] = data.pop("name", self.name)
        return data


class LocalConfig(TrainingServiceConfig):
    """Worker processes on this machine. ``gpu_indices``, ``max_trial_number_per_gpu`` and
    ``reuse_mode`` become the experiment's settings; GPUs are used whether or not other processes
    run on them (``use_active_gpu`` is kept for NNI code)."""

    name = "local"
    value = "local"
    own_fields: ClassVar[dict[str, Any]] = {"use_active_gpu": None, "max_trial_number_per_gpu": None,
                                            "gpu_indices": None, "reuse_mode": None, "trial_command": None,
                                            "trial_code_directory": None, "trial_gpu_number": None}


class RayConfig(TrainingServiceConfig):
    """Trials as Ray tasks on a local Ray instance (``RayTrainingService(...)`` for a cluster)."""

    name = "ray"
    value = "ray"


_FAMILIES = {"execution_engine": ExecutionEngineConfig, "model_format": ModelFormatConfig,
             "training_service": TrainingServiceConfig}


def config_object(field: str, value: Any) -> Any:
    """``value`` as the config object of ``field`` when it is a known name; anything else unchanged
    (None, a service object, or an unknown name that validation then reports)."""
    family = _FAMILIES[field]
    if isinstance(value, str) and not isinstance(value, NamedConfig) and value in family.registry:
        return family(name=value)
    return value
