"""A trial's journal: what it reported, on disk before ``report_*`` returns.

The experiment process records a trial's events as they arrive, but an event on its way (in a
socket, in a queue) dies with that process. So the trial also appends every report to a file in
its own folder, flushed to disk (``fsync``) before the report call returns; a resume reads the
journals of models the store does not show finished, before it re-runs anything.

Format (version 1): JSON lines. The first is the header ``{"journal": 1, "model_id": ..., "time": ...}``
(``time`` when the trial started, by this machine's clock); then ``{"kind": "intermediate" | "final",
"value": <metric>}`` per report, and ``{"kind": "end", "status": "failed", "error": ...}`` if the
trial's code raised. A line torn by a crash (the last one) is ignored. JSON only: reading a journal
never runs code.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .metric import MetricValue

__all__ = ["JOURNAL_NAME", "JOURNAL_VERSION", "TrialJournal", "JournalRecord", "read_journal"]

_logger = logging.getLogger(__name__)

JOURNAL_NAME = "journal.jsonl"
JOURNAL_VERSION = 1


class TrialJournal:
    """Appends a trial's reports to ``<trial_dir>/journal.jsonl``; each append is on disk when it returns."""

    def __init__(self, trial_dir: str | os.PathLike[str], model_id: int | None) -> None:
        folder = Path(trial_dir)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = folder / JOURNAL_NAME
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._lock = threading.Lock()
        self.undelivered = False  # a report could not reach the experiment (it died): not the trial's failure
        self._write({"journal": JOURNAL_VERSION, "model_id": model_id, "time": time.time()})
        _fsync_dir(folder)  # the file's name must survive a crash too

    @classmethod
    def open(cls, trial_dir: str | os.PathLike[str], model_id: int | None) -> TrialJournal | None:
        """The journal, or None where the folder cannot be written (a remote node without the
        experiment's path): that trial's reports are then as durable as their delivery."""
        try:
            return cls(trial_dir, model_id)
        except OSError as err:
            _logger.warning("Trial journal in %s cannot be written (%s); a crash of the experiment process "
                            "may lose what this trial reports.", trial_dir, err)
            return None

    def append(self, kind: str, value: MetricValue) -> None:
        self._write({"kind": kind, "value": value})

    def end_failed(self, error: str) -> None:
        self._write({"kind": "end", "status": "failed", "error": error})

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _write(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, separators=(",", ":"), allow_nan=False) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)  # one write of a line under O_APPEND: lines never interleave
            os.fsync(self._fd)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class JournalRecord:
    """What one journal holds: whose it is, when the trial started, and its reports in order."""

    path: Path
    model_id: int
    started: float
    intermediates: list[MetricValue] = field(default_factory=list)
    final: MetricValue | None = None
    error: str | None = None  # set when the trial's code raised


def read_journal(path: str | os.PathLike[str]) -> JournalRecord | None:
    """The journal at ``path``, or None when it is not one this version reads (or has no header yet)."""
    lines = Path(path).read_bytes().split(b"\n")
    entries = []
    for number, line in enumerate(lines):
        try:
            entries.append(json.loads(line))
        except ValueError:
            if number < len(lines) - 2:  # not the last line (torn by a crash) or the empty rest after it
                _logger.warning("Trial journal %s: line %d is not JSON; read up to it.", path, number + 1)
            break
    header = entries[0] if entries else None
    if not isinstance(header, dict) or header.get("journal") != JOURNAL_VERSION:
        return None
    if not isinstance(header.get("model_id"), int):
        return None
    record = JournalRecord(Path(path), header["model_id"], float(header.get("time", 0.0)))
    for entry in entries[1:]:
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind == "intermediate":
            record.intermediates.append(entry["value"])
        elif kind == "final":
            record.final = entry["value"]
        elif kind == "end":
            record.error = str(entry.get("error"))
    return record
