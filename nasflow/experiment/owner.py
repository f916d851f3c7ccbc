"""The owner lock: one process writes an experiment at a time.

The writer (the process creating, running or resuming the experiment) holds an ``flock`` on a lock
file beside the database for as long as it writes. The OS drops the lock when the process ends,
however it ends (``kill -9`` included), so no stale lock can block a resume: the lock decides who
owns the experiment, never a recorded pid. The holder writes its pid into the file only so that a
refused process can name it. A child forked without exec (not the local service's fork server, which
is exec'd) shares the lock until it exits.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

__all__ = ["LockHeld", "OwnerLock", "pid_alive"]

_PID_WAIT = 10.0  # at most, for a holder that has just taken the lock to record its pid (see _holder)


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid exists (one of another user's counts): for messages and
    ``nasflow stop``, never to decide ownership (the lock does)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


class LockHeld(Exception):
    """Another process holds the lock; ``pid`` is its pid, or None if it recorded none."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(f"held by pid {pid}")
        self.pid = pid


class OwnerLock:
    """An exclusive ``flock`` on ``path``, held until :meth:`release` or the end of the process."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, path: Path) -> OwnerLock:
        """Take the lock at once or raise :class:`LockHeld`; creates the file (0600) if needed."""
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _holder(fd)
                os.close(fd)
                raise LockHeld(pid) from None
            except BaseException:
                os.close(fd)
                raise
            if _names(path, fd):
                break
            os.close(fd)  # the holder removed the file (a discarded experiment) before we locked: take the new one
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        """Drop the lock (idempotent); the file stays, and a stale file never blocks anyone."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` is still the file open as ``fd`` (not removed or replaced since)."""
    try:
        here = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (opened.st_dev, opened.st_ino)


def _holder(fd: int) -> int | None:
    """The pid recorded by the lock's holder. One that has only just locked may not have replaced its
    predecessor's pid yet (a dead process's, or none): wait for it, which takes it microseconds."""
    deadline = time.monotonic() + _PID_WAIT
    while True:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text.isdigit() and pid_alive(int(text)):
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


