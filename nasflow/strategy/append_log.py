"""``AppendLog``: the list a strategy's ``state_dict`` returns for a part of its state that only grows
(TPE's told trials, the samples seen, completed learning curves), so that the experiment saves each
state by appending what is new instead of rewriting the whole list after every model."""

from __future__ import annotations

from typing import Any

__all__ = ["AppendLog"]


class AppendLog(list[Any]):
    """A list whose entries are only ever appended: never changed, removed or reordered.

    Returned in a ``state_dict``, it promises that every later state of the same strategy holds, at
    the same place, an ``AppendLog`` that starts with this one's entries (and that those entries are
    not mutated afterwards). The experiment relies on it to store only the entries added since its
    last save (see ``nasflow.experiment.strategy_state``); loaded back, the state holds an
    ``AppendLog`` again. Otherwise it is a plain list: ``load_state_dict`` needs nothing special.

    A strategy returns its own log, not a copy (copying would cost O(entries) at every save, twice
    per model): a caller keeping a ``state_dict`` sees it grow, and must not change it.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"AppendLog({list.__repr__(self)})"
