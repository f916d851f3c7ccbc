"""Where trials run. The engine hands over a serialized trial and reads back a stream of events;
it never knows whether the trial ran in a local process or on a Ray node."""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["TrialSpec", "TrialEvent", "TrialEndStatus", "TrainingService"]

TrialEndStatus = Literal["succeeded", "failed", "cancelled", "timeout"]


@dataclass
class TrialSpec:
    """One trial to run.

    ``payload`` is ``cloudpickle.dumps(fn)`` of a zero-argument callable; the service runs ``fn()``
    inside ``nasflow.runtime.trial_context`` (see ``run_payload``) so that ``nasflow.report_*`` calls
    become ``TrialEvent``s. ``timeout`` is in seconds of wall time from the trial's start.
    """

    trial_id: str
    payload: bytes
    timeout: float | None = None
    log_path: str | None = None
    gpu_number: int = 0
    resources: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialEvent:
    """Something that happened to a trial, in order per trial.

    kind: ``"started"`` (value: dict with e.g. pid, node, gpu indices), ``"intermediate"`` or
    ``"final"`` (value: the metric), ``"end"`` (``status`` set; ``error`` holds the reason when
    the trial did not succeed). Exactly one ``"end"`` per submitted trial.
    """

    trial_id: str
    kind: Literal["started", "intermediate", "final", "end"]
    value: Any = None
    status: TrialEndStatus | None = None
    error: str | None = None


class TrainingService(abc.ABC):
    """A place that runs trials: a local worker pool, a Ray cluster, remote machines."""

    @abc.abstractmethod
    def start(self) -> None:
        """Bring up workers (idempotent)."""

    @abc.abstractmethod
    def submit(self, trial: TrialSpec) -> None:
        """Start ``trial`` now; the caller checks ``capacity()`` first."""

    @abc.abstractmethod
    def poll_events(self, timeout: float) -> list[TrialEvent]:
        """Events that arrived, waiting up to ``timeout`` seconds for the first one."""

    @abc.abstractmethod
    def cancel(self, trial_id: str) -> None:
        """Stop a running trial; it ends with status ``"cancelled"``."""

    @abc.abstractmethod
    def capacity(self) -> int:
        """How many more trials can start right now."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Stop every trial and worker; nothing may be left running."""

    # ---- for services that buffer events as they read them ------------------------------------
    _events: list[TrialEvent]

    def _pump(self, wait: float) -> None:
        """Read what trials sent (waiting up to ``wait`` seconds) into ``self._events``."""
        raise NotImplementedError

    def _drain_events(self, timeout: float) -> list[TrialEvent]:
        """Pump until an event is buffered or ``timeout`` passes, then hand the buffer over."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            self._pump(0.0 if self._events else deadline - time.monotonic())
            if self._events or time.monotonic() >= deadline:
                break
        events, self._events = self._events, []
        return events

    def __enter__(self) -> TrainingService:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
