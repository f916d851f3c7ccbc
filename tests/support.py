"""Helpers shared by tests that watch real processes and training-service events."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest
import torch

from nasflow.training_service import TrainingService, TrialEvent

__all__ = ["alive", "descendants", "one_thread", "wait_for"]


def alive(pid: int) -> bool:
    """Running; a zombie runs nothing (and pid 1 may not reap it in a container), so it counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (the fork server and its workers, for an experiment process)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    children[int(f.read().rsplit(")", 1)[1].split()[1])].append(int(entry))
            except OSError:
                continue
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def wait_for(service: TrainingService, predicate: Callable[[TrialEvent], bool],
             limit: float = 20.0) -> list[TrialEvent]:
    """Poll until an event matches; returns every event seen (including the rest of that batch)."""
    seen: list[TrialEvent] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        batch = service.poll_events(0.1)
        seen += batch
        if any(predicate(event) for event in batch):
            return seen
    raise AssertionError(f"no matching event in {limit} s; saw {seen}")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The machine's cores are shared: tiny models run as fast on one thread (a conftest that imports
    this fixture makes it apply to its tests)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
