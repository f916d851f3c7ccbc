"""What runs inside the Ray cluster for ``RayTrainingService``: the trial task and the event collector.

Kept apart from ``ray.py`` (the driver side) because Ray ships these by import path to every node:
the nodes need nasflow, but nothing here imports Ray at module level, so importing it stays cheap.

Events travel from a trial to the driver through one collector actor per service, pinned to the
head node: the trial pushes ``(trial_id, seq, kind, value)`` tuples, the driver drains them with a
blocking call. The collector is a threaded actor, so pushes may be applied out of order; ``seq``
lets the driver put them back in order, and the task returns how many it pushed so the driver knows
when a trial's stream is complete.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from typing import Any

from .payload import run_payload

__all__ = ["EventCollector", "run_ray_trial", "LOG_KIND"]

LOG_KIND = "log"  # internal event kind: a chunk of the trial's stdout/stderr, written to its log file
_LOG_INTERVAL = 0.5
_PRUNE_AT = 64  # unacknowledged pushes kept before their acknowledgements are collected
_ACK_TIMEOUT = 60.0


class EventCollector:
    """Buffers trial events until the driver drains them (a threaded Ray actor on the head node)."""

    def __init__(self) -> None:
        self._events: list[tuple] = []
        self._cond = threading.Condition()

    def push(self, batch: list[tuple]) -> None:
        with self._cond:
            self._events.extend(batch)
            self._cond.notify_all()

    def drain(self, timeout: float) -> list[tuple]:
        """Everything buffered; waits up to ``timeout`` seconds for the first event."""
        with self._cond:
            if not self._events:
                self._cond.wait(timeout)
            events, self._events = self._events, []
        return events

    def ping(self) -> bool:
        return True


class _Pusher:
    """Numbers a trial's events and sends them to the collector; metrics wait for the collector's
    acknowledgement, the rest (start info, log chunks) does not."""

    def __init__(self, collector: Any, trial_id: str) -> None:
        import ray

        self._ray = ray
        self._collector = collector
        self._trial_id = trial_id
        self._lock = threading.Lock()
        self._seq = 0
        self._pending: list[Any] = []

    def __call__(self, kind: str, value: Any) -> None:
        with self._lock:
            ref = self._collector.push.remote([(self._trial_id, self._seq, kind, value)])
            self._seq += 1
            if kind not in ("intermediate", "final"):  # where it runs, log chunks: no need to wait
                self._pending.append(ref)
                if len(self._pending) >= _PRUNE_AT:
                    _, self._pending = self._ray.wait(self._pending, num_returns=len(self._pending), timeout=0)
                return
        # A reported metric is acknowledged before the trial goes on, so a trial that dies right
        # after reporting (or whose node dies) has still delivered it.
        self._ray.get(ref, timeout=_ACK_TIMEOUT)

    def flush(self) -> int:
        """Wait until the collector holds every event; returns how many were sent."""
        with self._lock:
            pending, self._pending = self._pending, []
            count = self._seq
        if pending:
            self._ray.get(pending, timeout=_ACK_TIMEOUT)
        return count


class _LogCapture:
    """Sends the trial's stdout and stderr (file descriptors 1 and 2) to the driver as it is written.

    Output goes to an unnamed temporary file on the node; a thread ships new bytes every half second,
    so the log of a trial that is killed or whose node dies is complete up to its last moments.
    """

    def __init__(self, emit: Callable[[str, Any], None]) -> None:
        self._emit = emit
        sys.stdout.flush()
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile(prefix="nasflow-trial-")
        self._saved = (os.dup(1), os.dup(2))
        os.dup2(self._file.fileno(), 1)
        os.dup2(self._file.fileno(), 2)
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nasflow-log", daemon=True)
        self._thread.start()

    def _ship(self) -> None:
        while True:
            chunk = os.pread(self._file.fileno(), 1 << 20, self._offset)
            if not chunk:
                return
            self._offset += len(chunk)
            self._emit(LOG_KIND, chunk.decode("utf-8", "replace"))

    def _loop(self) -> None:
        while not self._stop.wait(_LOG_INTERVAL):
            self._ship()

    def close(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self._stop.set()
        self._thread.join()
        self._ship()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._file.close()


def run_ray_trial(collector: Any, trial_id: str, payload: bytes, capture_log: bool) -> dict[str, Any]:
    """The body of a trial's Ray task: report where it runs, run the payload, report how it ended.

    A failure of the trial's own code is returned (with its traceback), not raised, so the driver can
    tell it apart from Ray failing (a dead worker or node), which surfaces as a Ray exception.
    """
    import ray

    push = _Pusher(collector, trial_id)
    context = ray.get_runtime_context()
    push("started", {
        "node": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "host": socket.gethostname(),
        "pid": os.getpid(), "gpus": [str(g) for g in ray.get_gpu_ids()],
    })
    capture = _LogCapture(push) if capture_log else None
    os.umask(0o077)  # what the trial writes is its user's alone, as in a local worker
    status, error = "succeeded", None
    try:
        run_payload(payload, push)
    except BaseException:  # noqa: BLE001 - SystemExit and KeyboardInterrupt from the trial fail it too
        status, error = "failed", traceback.format_exc()
    finally:
        if capture is not None:
            capture.close()
    return {"status": status, "error": error, "events": push.flush()}
