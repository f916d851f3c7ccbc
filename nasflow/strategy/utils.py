"""Small pieces shared by strategies."""

from __future__ import annotations

import json
from typing import Any

from nasflow.mutable import Sample

__all__ = ["sample_key", "DedupFilter"]


def sample_key(sample: Sample | None) -> str:
    """A canonical string for a sample, so equal samples compare equal whatever their key order."""
    return json.dumps(sample, sort_keys=True, default=repr)


class DedupFilter:
    """Remembers samples; ``add`` says whether a sample is new."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def add(self, sample: Sample | None) -> bool:
        key = sample_key(sample)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def __contains__(self, sample: Sample) -> bool:
        return sample_key(sample) in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def state_dict(self) -> list[str]:
        return sorted(self._seen)

    def load_state_dict(self, state: list[str]) -> None:
        self._seen.update(state)
