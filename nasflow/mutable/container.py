"""Lists and dicts whose items may be mutables; they freeze item by item."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .base import IsLeaf, LabeledMutable, Mutable, Sample

__all__ = ["MutableList", "MutableDict"]


def _leaves(items: Iterable[Any], is_leaf: IsLeaf) -> Iterator[LabeledMutable]:
    for item in items:
        if isinstance(item, Mutable):
            yield from item.leaf_mutables(is_leaf)


def _freeze(item: Any, sample: Sample) -> Any:
    return item.freeze(sample) if isinstance(item, Mutable) else item


class MutableList(Mutable):
    """A list of mutables (or plain values); ``freeze`` gives the list of frozen items."""

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self.items = list(items)

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        return _leaves(self.items, is_leaf)

    def freeze(self, sample: Sample) -> list[Any]:
        self.validate(sample)
        return [_freeze(item, sample) for item in self.items]

    def append(self, item: Any) -> None:
        self.items.append(item)

    def __getitem__(self, index: int) -> Any:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __repr__(self) -> str:
        return f"MutableList({self.items!r})"


class MutableDict(Mutable):
    """A dict of mutables (or plain values); ``freeze`` gives the dict of frozen values."""

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        self.items = dict(items)

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        return _leaves(self.items.values(), is_leaf)

    def freeze(self, sample: Sample) -> dict[str, Any]:
        self.validate(sample)
        return {key: _freeze(value, sample) for key, value in self.items.items()}

    def __getitem__(self, key: str) -> Any:
        return self.items[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.items[key] = value

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.items)

    def keys(self) -> Any:
        return self.items.keys()

    def values(self) -> Any:
        return self.items.values()

    def __repr__(self) -> str:
        return f"MutableDict({self.items!r})"
