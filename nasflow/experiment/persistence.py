"""What an experiment keeps in its store besides models and metrics, so it can be resumed:
the model space with its evaluator, the strategy as configured, and the strategy's progress."""

from __future__ import annotations

from typing import Any

import cloudpickle

from nasflow.space import ExecutableModelSpace, RawFormatModelSpace

from .store import ExperimentStore, ModelRecord
from .stored import apply_record

__all__ = ["dump_setup", "load_setup", "restore_model", "SETUP_KEY"]

SETUP_KEY = "setup"


def _dump_space(space: ExecutableModelSpace) -> Any:
    if isinstance(space, RawFormatModelSpace):  # refuses pickling on purpose: ship module and evaluator
        return ("raw", space.model_space, space.evaluator)
    return ("pickled", space)


def _load_space(spec: Any) -> ExecutableModelSpace:
    kind = spec[0]
    if kind == "raw":
        return RawFormatModelSpace(spec[1], spec[2])
    return spec[1]


def dump_setup(space: ExecutableModelSpace, strategy: Any, config: Any) -> str:
    """The space, the (not yet initialized) strategy and the config as text for the store; user
    classes travel by value when they live in ``__main__``, so ``nasflow resume`` needs no script.

    Raises ``TypeError`` naming the culprit when one of them cannot be pickled.
    """
    try:
        return cloudpickle.dumps((_dump_space(space), strategy, config)).hex()
    except Exception as err:
        raise TypeError(
            f"The {_culprit(space, strategy, config)} cannot be pickled ({err!r}), so the experiment could not "
            "be resumed or run in workers. Keep open files, locks, sockets and data loaders out of it: "
            "create them inside the evaluator's function instead."
        ) from err


def _culprit(space: ExecutableModelSpace, strategy: Any, config: Any) -> str:
    """Which part of the setup refuses to be pickled."""
    parts = (("model space", getattr(space, "model_space", space)), ("evaluator", space.evaluator),
             ("strategy", strategy), ("config", config))
    for name, value in parts:
        try:
            cloudpickle.dumps(value)
        except Exception:
            return name
    return "experiment setup"


def load_setup(store: ExperimentStore) -> tuple[ExecutableModelSpace, Any, Any]:
    """The space, a fresh strategy and the config: the ``dump_setup`` text that the store's creation
    committed under ``SETUP_KEY`` with the store itself."""
    blob = store.get_meta(SETUP_KEY)
    if blob is None:
        raise RuntimeError(f"{store.path} holds no model space and strategy; it cannot be resumed.")
    space_spec, strategy, config = cloudpickle.loads(bytes.fromhex(blob))
    return _load_space(space_spec), strategy, config


def restore_model(space: ExecutableModelSpace, record: ModelRecord) -> ExecutableModelSpace:
    """The model of a store record, with its id, status and metrics."""
    return apply_record(space.freeze(record.sample), record)
