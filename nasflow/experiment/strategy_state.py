"""How an experiment keeps its strategy's state in the store, cheaply after every model.

A state is split into its skeleton (the state with each ``AppendLog`` replaced by a marker of where
it was), rewritten only when it changes, and the entries of its ``AppendLog``s, of which only those
added since the last save are written. Both go in one store transaction, so a crash keeps the last
save whole. A strategy whose growing lists are ``AppendLog``s (TPE's history, the samples seen) thus
costs the same to save at trial 10,000 as at trial 10, where pickling the whole state cost O(trials).
Entries are pickled like the state: only resume reads them back (readers never unpickle).
"""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cloudpickle

from nasflow.strategy.append_log import AppendLog

from .store import ExperimentStore

__all__ = ["StrategyStateSaver", "dump_state", "split_state", "join_state"]


def dump_state(value: Any) -> bytes:
    """Strategy states are plain data: the C pickler is several times faster than cloudpickle's, which
    remains the fallback for states holding functions or classes."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        return cloudpickle.dumps(value)


@dataclass(frozen=True, slots=True)
class LogMarker:
    """Where an ``AppendLog`` stood in a state: the skeleton keeps this, the store the log's entries."""

    path: str


def split_state(state: Any) -> tuple[Any, dict[str, AppendLog]]:
    """The skeleton of ``state`` and its ``AppendLog``s by path (a JSON list of the keys leading there).

    Only plain dicts, lists and tuples are looked into; a log inside anything else stays in the skeleton.
    """
    logs: dict[str, AppendLog] = {}

    def walk(value: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(value, AppendLog):
            key = json.dumps(path, default=repr)
            logs[key] = value
            return LogMarker(key)
        kind = type(value)
        if kind is dict:
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if kind is list or kind is tuple:
            if _flat(value):  # e.g. a random generator's state: nothing inside to look into
                return value
            return kind(walk(v, (*path, i)) for i, v in enumerate(value))
        return value

    return walk(state, ()), logs


_SCALARS = frozenset({int, float, str, bool, bytes, type(None)})


def _flat(values: list[Any] | tuple[Any, ...]) -> bool:
    """Whether a list or tuple holds only scalars (one set of types, cheaper than walking each one)."""
    return {type(v) for v in values} <= _SCALARS


def join_state(skeleton: Any, logs: Mapping[str, list[Any]]) -> Any:
    """The state ``split_state`` took apart: each marker replaced by its log (an ``AppendLog`` again)."""
    def walk(value: Any) -> Any:
        if isinstance(value, LogMarker):
            return AppendLog(logs.get(value.path, ()))
        kind = type(value)
        if kind is dict:
            return {k: walk(v) for k, v in value.items()}
        if kind is list or kind is tuple:
            return kind(walk(v) for v in value)
        return value

    return walk(skeleton)


class StrategyStateSaver:
    """Saves a strategy's state into ``store`` incrementally, and loads it back for a resume."""

    def __init__(self, store: ExperimentStore) -> None:
        self._store = store
        self._skeleton: bytes | None = None  # the skeleton as last saved
        self._saved: dict[str, int] = {}  # path -> how many of the log's entries are in the store
        self._lock = threading.RLock()  # both threads save; reentrant: after_commit may call back at once

    def load(self) -> Any | None:
        """The saved state (unpickled: only for a resume), or None if none was saved. Later saves
        continue from it."""
        blob = self._store.load_strategy_state()
        if blob is None:
            return None
        logs = {path: [cloudpickle.loads(entry) for entry in entries]
                for path, entries in self._store.load_strategy_log().items()}
        with self._lock:
            self._skeleton = blob
            self._saved = {path: len(entries) for path, entries in logs.items()}
        return join_state(cloudpickle.loads(blob), logs)

    def save(self, state_dict: Callable[[], Any]) -> None:
        """Save the state ``state_dict()`` gives now: the skeleton if it changed, and the new entries of
        each log; nothing when neither changed. A log shorter than what was saved (a promise broken) is
        stored afresh."""
        with self._lock:
            skeleton, logs = split_state(state_dict())
            blob = dump_state(skeleton)
            appends: list[tuple[str, int, bytes]] = []
            reset = [path for path in self._saved if path not in logs]
            saved = {path: len(log) for path, log in logs.items()}  # read once: a live log may grow meanwhile
            for path, log in logs.items():
                done = self._saved.get(path, 0)
                if saved[path] < done:
                    reset.append(path)
                    done = 0
                appends.extend((path, seq, dump_state(log[seq])) for seq in range(done, saved[path]))
            if blob == self._skeleton and not appends and not reset:
                return
            self._store.save_strategy_state(None if blob == self._skeleton else blob, appends=appends, reset=reset)
            self._store.after_commit(lambda: self._stored(blob, saved))  # a failed batch leaves them unsaved

    def _stored(self, skeleton: bytes, saved: dict[str, int]) -> None:
        with self._lock:
            self._skeleton, self._saved = skeleton, saved
