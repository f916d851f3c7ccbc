"""Automatic, reproducible labels for mutables.

Labels name the decisions of a space. An explicit label is used as given; otherwise a label is made
from the enclosing ``label_scope`` and a counter, so building the same space twice gives the same
labels (which is what lets a frozen model be rebuilt from a sample in another process).
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["label_scope", "auto_label"]

_local = threading.local()


def _stack() -> list[label_scope]:
    if not hasattr(_local, "scopes"):
        _local.scopes = [label_scope.__new__(label_scope)]
        _local.scopes[0]._init_root()
    return _local.scopes


class label_scope:
    """A namespace for automatic labels: ``with label_scope('cell'): choice(...)`` gives ``cell/1``.

    An unnamed scope takes the next number of its parent as its name. Counters start at 1 every
    time a scope is entered, which keeps labels reproducible. An ``absolute`` scope ignores its
    parents' names (a model space does this, so it is labelled alike wherever it is built).
    """

    def __init__(self, basename: str | None = None, *, absolute: bool = False) -> None:
        self.basename = basename
        self.absolute = absolute
        self.path: list[str] | None = None
        self._counter = 0

    def _init_root(self) -> None:
        self.basename, self.absolute, self.path, self._counter = None, True, [], 0

    def __enter__(self) -> label_scope:
        parent = _stack()[-1]
        name = self.basename if self.basename is not None else str(parent.next_index())
        base = [] if self.absolute else list(parent.path or [])
        self.path = [*base, name] if name else base
        self._counter = 0
        _stack().append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _stack().pop()

    @property
    def name(self) -> str:
        return "/".join(self.path or [])

    def next_index(self) -> int:
        self._counter += 1
        return self._counter

    def next_label(self) -> str:
        index = self.next_index()
        return f"{self.name}/{index}" if self.name else f"global/{index}"

    @staticmethod
    def current() -> label_scope:
        return _stack()[-1]


def auto_label(label: str | None = None) -> str:
    """The label to use: ``label`` itself when given, else the next one of the current scope."""
    if label is not None:
        if not isinstance(label, str) or not label:
            raise TypeError(f"A label must be a non-empty string, got {label!r}.")
        return label
    return label_scope.current().next_label()
