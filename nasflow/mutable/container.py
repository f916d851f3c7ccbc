"""Lists and dicts whose items may be mutables; they freeze item by item (NNI's containers)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .base import IsLeaf, LabeledMutable, Mutable, Sample, mutable_equal
from .exception import SampleValidationError

__all__ = ["MutableList", "MutableDict"]


def _freeze(item: Any, sample: Sample) -> Any:
    return item.freeze(sample) if isinstance(item, Mutable) else item


class MutableList(Mutable):
    """A list of mutables (plain items are kept as they are); ``freeze`` gives the list of frozen items.

    A nested plain list is not searched: wrap it in a ``MutableList`` too.
    """

    def __init__(self, mutables: Iterable[Any] | None = None) -> None:
        self.mutables: list[Any] = list(mutables) if mutables else []

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        for item in self.mutables:
            if isinstance(item, Mutable):
                yield from item.leaf_mutables(is_leaf)

    def check_contains(self, sample: Sample) -> SampleValidationError | None:
        for index, item in enumerate(self.mutables):
            if isinstance(item, Mutable):
                err = item.check_contains(sample)
                if err is not None:
                    err.paths.insert(0, f"[{index}]")
                    return err
        return None

    def freeze(self, sample: Sample) -> list[Any]:
        self.validate(sample)
        return [_freeze(item, sample) for item in self.mutables]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and mutable_equal(self.mutables, other.mutables)

    __hash__ = Mutable.__hash__

    def equals(self, other: Any) -> bool:
        return self == other

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return type(self)(self.mutables[index])
        return self.mutables[index]

    def __setitem__(self, index: int, item: Any) -> None:
        self.mutables[index] = item

    def __delitem__(self, index: int | slice) -> None:
        del self.mutables[index]

    def __len__(self) -> int:
        return len(self.mutables)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.mutables)

    def __contains__(self, item: Any) -> bool:
        return any(x is item for x in self.mutables) or any(mutable_equal(x, item) for x in self.mutables)

    def __iadd__(self, items: Iterable[Any]) -> MutableList:
        return self.extend(items)

    def insert(self, index: int, item: Any) -> None:
        self.mutables.insert(index, item)

    def append(self, item: Any) -> MutableList:
        self.mutables.append(item)
        return self

    def extend(self, items: Iterable[Any]) -> MutableList:
        self.mutables.extend(items)
        return self

    def extra_repr(self) -> str:
        return repr(self.mutables)


class MutableDict(Mutable):
    """A dict of mutables (plain values are kept as they are); ``freeze`` gives the dict of frozen values.

    ``MutableDict({'a': ...})`` and ``MutableDict(a=...)`` are the same. The keys only name the
    frozen entries; the labels of the mutables are what a sample holds.
    """

    def __init__(self, mutables: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None, **kwargs: Any) -> None:
        items: dict[str, Any] = dict(mutables) if mutables is not None else {}
        for key, value in kwargs.items():
            if key in items:
                raise ValueError(f'Keyword "{key}" already exists in the dictionary.')
            items[key] = value
        self.mutables = items

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterable[LabeledMutable]:
        for value in self.mutables.values():
            if isinstance(value, Mutable):
                yield from value.leaf_mutables(is_leaf)

    def check_contains(self, sample: Sample) -> SampleValidationError | None:
        for key, value in self.mutables.items():
            if isinstance(value, Mutable):
                err = value.check_contains(sample)
                if err is not None:
                    err.paths.insert(0, key)
                    return err
        return None

    def freeze(self, sample: Sample) -> dict[str, Any]:
        self.validate(sample)
        return {key: _freeze(value, sample) for key, value in self.mutables.items()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and mutable_equal(self.mutables, other.mutables)

    __hash__ = Mutable.__hash__

    def equals(self, other: Any) -> bool:
        return self == other

    def __getitem__(self, key: str) -> Any:
        return self.mutables[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.mutables[key] = value

    def __delitem__(self, key: str) -> None:
        del self.mutables[key]

    def __len__(self) -> int:
        return len(self.mutables)

    def __iter__(self) -> Iterator[str]:
        return iter(self.mutables)

    def __contains__(self, key: object) -> bool:
        return key in self.mutables

    def clear(self) -> None:
        self.mutables.clear()

    def pop(self, key: str, *default: Any) -> Any:
        return self.mutables.pop(key, *default)

    def keys(self) -> Any:
        return self.mutables.keys()

    def values(self) -> Any:
        return self.mutables.values()

    def items(self) -> Any:
        return self.mutables.items()

    def update(self, mutables: Mapping[str, Any]) -> None:
        self.mutables.update(mutables)

    def extra_repr(self) -> str:
        return repr(self.mutables)
