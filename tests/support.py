"""Helpers shared by tests that watch real processes and training-service events."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

import nasflow
from nasflow.nn import ModelSpace, MutableLinear
from nasflow.training_service import TrainingService, TrialEvent

__all__ = ["HANG_GUARD_S", "alive", "descendants", "one_thread", "reaped", "wait_for", "wait_until",
           "wait_while_running", "WidthSpace"]

# How long a test waits for something that should happen soon before calling it a hang. A guard, not a
# speed requirement: generous, so a 2-core machine kept busy by other work never trips it.
HANG_GUARD_S = 120.0


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


def wait_until(predicate: Callable[[], Any], what: str = "condition", limit: float = HANG_GUARD_S,
               interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {limit} s waiting for {what}")


@contextlib.contextmanager
def reaped(process: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Yield ``process``; on the way out kill it if it still runs, and wait for it, so that a failing
    test leaves no process behind (``Popen``'s own ``with`` only waits, and would hang)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_while_running(process: subprocess.Popen, predicate: Callable[[], Any], what: str,
                       limit: float = HANG_GUARD_S, interval: float = 0.02) -> Any:
    """``wait_until``, failing at once, with the process's output, if ``process`` exits first."""

    def holds() -> Any:
        value = predicate()
        if not value and process.poll() is not None:
            output = "".join(part or "" for part in process.communicate())
            raise AssertionError(f"the process exited ({process.returncode}) before {what}:\n{output}")
        return value

    return wait_until(holds, what, limit, interval)


def wait_for(service: TrainingService, predicate: Callable[[TrialEvent], bool],
             limit: float = HANG_GUARD_S) -> list[TrialEvent]:
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


class WidthSpace(ModelSpace):
    """The smallest real space: one linear layer of a searched width (1, 2 or 3) on two inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = MutableLinear(2, nasflow.choice("width", [1, 2, 3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)
