"""Labels name the decisions of a space, like paths in a file system (NNI 3.0's rules).

A ``label_scope`` is a directory and a label a file in it: inside ``with label_scope('model')``
an explicit label ``'lc'`` becomes ``'model/lc'`` and an unlabelled choice gets the scope's next
number, ``'model/1'``. Scopes nest (``'model/cell/op_2_0'``); an unnamed scope takes its parent's
next number as its name. Counters restart whenever a scope is entered, so building the same space
twice gives the same labels, which is what lets a sample freeze a model in another process. With
no scope at all, an explicit label is kept as given and an unlabelled choice is numbered under
``global`` (``'global/1'``), with a warning, as that numbering depends on creation order.

A finished label is a ``label`` (a ``str`` that remembers its parts); passing it again as a label
leaves it alone, so composite mutables can hand their label to the leaves they build.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["label", "label_scope", "strict_label_scope", "numbering_scope", "auto_label", "uid", "reset_uid",
           "validate_label_name"]

_logger = logging.getLogger(__name__)
_local = threading.local()
GLOBAL_SCOPE = "global"


def _state() -> Any:
    """Per-thread scope stack and counters (a trial may rebuild a model while another thread builds one)."""
    if not hasattr(_local, "stack"):
        _local.stack = []
        _local.counters = {}
    return _local


def uid(namespace: str = "default") -> int:
    """The next number of ``namespace``'s counter (1, 2, ...)."""
    counters = _state().counters
    counters[namespace] = counters.get(namespace, 0) + 1
    return counters[namespace]


def reset_uid(namespace: str = "default") -> None:
    """Restart ``namespace``'s counter: the next ``uid(namespace)`` is 1 again."""
    _state().counters[namespace] = 0


def validate_label_name(name: Any) -> None:
    """A label given by the user: a non-empty string.

    NNI refuses ``/`` in it; nasflow reads ``'a/b'`` as a path below the current scope instead (a
    label made that way is still scoped like any other), so no NNI code behaves differently.
    """
    if not isinstance(name, str):
        raise TypeError(f"A label must be a string, got {name!r}.")
    if not name or "" in name.split("/"):
        raise ValueError(f"A label cannot be empty (got {name!r}); give it a name, or leave label=None for an "
                         "automatic one.")


class label(str):  # noqa: N801 (NNI's public name)
    """A complete label: a ``str`` (``'model/cell/op_2_0'``) that also keeps its ``parts``."""

    parts: list[str]

    def __new__(cls, parts: list[str] | str) -> label:
        if isinstance(parts, str):
            obj = super().__new__(cls, parts)
            obj.parts = parts.split("/") if not isinstance(parts, label) else list(parts.parts)
        else:
            obj = super().__new__(cls, "/".join(parts))
            obj.parts = list(parts)
        return obj

    def __reduce__(self) -> tuple:
        return label, (list(self.parts),)

    def as_scope(self) -> label_scope:
        """A scope at this label's path (what a composite mutable uses to name its parts)."""
        return label_scope(_path=list(self.parts))


class label_scope:  # noqa: N801 (NNI's public name)
    """A namespace for labels; ``with label_scope('cell'):`` prefixes every label made inside.

    ``basename`` is the scope's own name; None takes the parent's next number (or ``global/N``
    outside any scope). Entering resets the scope's counter; re-entering a scope keeps its path.
    """

    def __init__(self, basename: str | label | label_scope | None = None, *, _path: list[str] | None = None) -> None:
        if isinstance(basename, label):
            _path, basename = list(basename.parts), None
        elif isinstance(basename, label_scope):
            _path, basename = basename.path, None
        if basename is not None:
            validate_label_name(basename)
        self.basename = basename
        self.path: list[str] | None = list(_path) if _path is not None else None
        if self.path:
            self.basename = self.path[-1]
        self.activated = False

    def __enter__(self) -> label_scope:
        if self.path is None:
            parent = label_scope.current()
            if self.basename is None:
                if parent is None:
                    _logger.warning("Label is not provided, and there is no label scope: global numbering is used. "
                                    "Give the choice a label=... (or its ModelSpace a label_prefix) for stable labels.")
                    parent = label_scope.global_()
                self.path = parent.auto_child()
                self.basename = self.path[-1]
            else:
                own = self.basename.split("/")
                self.path = [*(parent.path or []), *own] if parent is not None else own
        _state().stack.append(self)
        reset_uid(self.name)
        self.activated = True
        return self

    def __exit__(self, *exc: Any) -> None:
        stack = _state().stack
        if stack and stack[-1] is self:
            stack.pop()
        self.activated = False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, label_scope) and self.path == other.path

    __hash__ = object.__hash__

    @property
    def name(self) -> str:
        """The full name, e.g. ``'model/cell'``."""
        if self.path is None:
            raise ValueError(f"label_scope {self.basename!r} has not been entered yet; use it in a `with` block.")
        return label(self.path)

    @property
    def absolute_scope(self) -> str:
        return self.name

    def next_label(self) -> str:
        """The next automatic name in this scope: ``'1'``, ``'2'``, ..."""
        return str(uid(self.name))

    def auto_child(self) -> list[str]:
        """The path of the next unlabelled thing made in this scope."""
        return [*(self.path or []), self.next_label()]

    def __repr__(self) -> str:
        return f"label_scope({self.name!r})" if self.path is not None else f"label_scope({self.basename!r})"

    @staticmethod
    def current() -> label_scope | None:
        """The innermost entered scope, or None outside every scope."""
        stack = _state().stack
        return stack[-1] if stack else None

    @staticmethod
    def global_() -> label_scope:
        """The scope of labels made outside every scope (never entered, never reset)."""
        return label_scope(GLOBAL_SCOPE, _path=[GLOBAL_SCOPE])


class _transparent_scope(label_scope):  # noqa: N801
    """A scope without a name of its own: labels made inside resolve against its parent's path."""

    def __init__(self) -> None:
        super().__init__()

    def __enter__(self) -> label_scope:
        parent = label_scope.current()
        self.path = list(parent.path or []) if parent is not None else []
        _state().stack.append(self)
        self._entered()
        self.activated = True
        return self

    def _entered(self) -> None:
        pass

    @property
    def name(self) -> str:
        return label(self.path or [])


class strict_label_scope(_transparent_scope):  # noqa: N801
    """The scope of a ModelSpace without ``label_prefix``: an unlabelled choice inside it is an error
    (as in NNI; its number would depend on construction order)."""

    def __init__(self, owner: str) -> None:
        super().__init__()
        self.owner = owner

    def auto_child(self) -> list[str]:
        raise ValueError(
            f"Label must be specified manually in NAS, or provide a `label_prefix` to the model space: {self.owner} "
            f"has a choice without a label. Give it label=..., or declare `class {self.owner}(ModelSpace, "
            "label_prefix='model')` to label unlabelled choices model/1, model/2, ..."
        )


class numbering_scope(_transparent_scope):  # noqa: N801
    """Transparent for explicit labels, but numbers unlabelled things under ``numbering``.

    A Repeat with a searched depth builds all its blocks in a space and only the chosen ones in a
    frozen model; numbering their unlabelled choices under the depth's label (``model/depth/1``)
    keeps every other automatic label the same in both.
    """

    def __init__(self, numbering: str) -> None:
        super().__init__()
        self.numbering = label(numbering)

    def _entered(self) -> None:
        reset_uid(self.numbering)

    def auto_child(self) -> list[str]:
        return [*self.numbering.parts, str(uid(self.numbering))]


def auto_label(name: str | label | None = None, scope: label_scope | None = None) -> str:
    """The full label for ``name`` in ``scope`` (default: the current scope).

    A ``label`` is returned as it is. ``name=None`` takes the scope's next number.
    """
    if isinstance(name, label):
        return name
    if scope is not None:
        if not isinstance(scope, label_scope):
            raise TypeError(f"scope must be a label_scope, got {scope!r}.")
        if name is None:
            return label(scope.auto_child())
        validate_label_name(name)
        return label([*(scope.path if scope.path is not None else [scope.name]), *name.split("/")])
    with label_scope(name) as made:
        return label(made.path or [])
