"""``WalCheckpointer``: folds a store's write-ahead log into its database file from a background thread.

A checkpoint syncs the WAL and then the database file to disk. SQLite's automatic one runs inside
whichever commit takes the WAL past 1,000 pages, so every fiftieth trial or so waited for two fsyncs:
most of the sequential engine's store time on a busy disk. Here the writer's commits never checkpoint;
after a commit this thread does (``PASSIVE``: it never blocks the writer or readers), at most once per
``interval`` seconds. Durability is unchanged: a commit is in the WAL either way (kill -9 loses
nothing), and a power cut may lose the commits since the last checkpoint, as before.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

__all__ = ["CHECKPOINT_INTERVAL", "WalCheckpointer"]

_logger = logging.getLogger(__name__)

CHECKPOINT_INTERVAL = 0.5  # seconds between checkpoints while commits keep coming


class WalCheckpointer:
    """One per writing store; ``committed()`` after each commit, ``close()`` before the writer closes."""

    def __init__(self, db: Path, interval: float = CHECKPOINT_INTERVAL) -> None:
        self._db = db
        self._interval = interval
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def committed(self) -> None:
        """A commit added to the WAL: checkpoint soon (the thread starts on the first commit)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._closed.is_set():
                    self._thread = threading.Thread(target=self._run, name=f"nasflow-checkpoint-{self._db.parent.name}",
                                                    daemon=True)
                    self._thread.start()
        self._wake.set()

    def close(self) -> None:
        """Stop the thread (after its current checkpoint); the writer's close folds in the rest."""
        with self._lock:
            self._closed.set()
            self._wake.set()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._db.resolve().as_uri() + "?mode=rw", uri=True, isolation_level=None,
                                   timeout=0)
        except sqlite3.Error as err:  # the writer's own close still checkpoints
            _logger.warning("Store %s: no background checkpoints (%s); the WAL grows until it closes.", self._db, err)
            return
        try:
            while True:
                self._wake.wait()
                if self._closed.is_set():
                    return
                self._wake.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as err:  # busy or a full disk: the writer's commits report real trouble
                    _logger.debug("Store %s: checkpoint skipped: %s", self._db, err)
                if self._closed.wait(self._interval):
                    return
        finally:
            conn.close()
