"""The experiment store: one SQLite database per experiment, the record a crash cannot erase.

The experiment process is the only writer: it holds the experiment's owner lock (see ``owner``) from
creating or opening the store until it closes it, and any other writer is refused at once. Creation
is atomic (a store is either absent or complete, setup included), and every write is one committed
transaction (WAL journal, ``synchronous=NORMAL``; ``batch()`` commits several writes as one), so
killing the process loses nothing already written (a power cut may lose the commits since the last
checkpoint, which a background thread makes: see ``checkpointer``). The CLI and dashboard read the
same file with ``open(path, read_only=True)`` while the experiment runs; that opens SQLite with
``mode=ro``, never writes the database file and never takes the lock. The folder is 0700 and the
database files 0600.

Tests only: ``NASFLOW_TEST_KILL_AT=<point>`` makes ``create`` SIGKILL its own process at that point
(``store-temp-created``, ``store-temp-committed``, ``store-published``), as a crash there would.
"""

from __future__ import annotations

import errno
import glob
import json
import math
import operator
import os
import secrets
import shutil
import signal
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasflow.runtime.metric import MetricDirection, metric_score, normalize_metric

from .checkpointer import WalCheckpointer
from .owner import LockHeld, OwnerLock

__all__ = [
    "APPLICATION_ID", "DB_FILENAME", "DESCRIPTION_KEY", "EXPERIMENT_STATUSES", "METRIC_DIRECTION_KEY", "MODEL_STATUSES",
    "SCHEMA_VERSION",
    "DuplicateModelError", "ExperimentRecord", "ExperimentStore", "MetricsRecord", "ModelRecord",
    "StatusChange", "StoreClosedError", "StoreCorruptError", "StoreError", "StoreExistsError",
    "StoreForeignError", "StoreIOError", "StoreLockedError", "StoreNotFoundError", "StoreReadOnlyError",
    "StoreVersionError", "UnknownModelError", "database_path", "default_experiment_dir", "rank_trained",
]

DB_FILENAME = "nasflow.db"
APPLICATION_ID = 0x4E415346  # "NASF": marks a SQLite file as a nasflow store (PRAGMA application_id)
SCHEMA_VERSION = 2  # PRAGMA user_version; bump with a migration (_MIGRATIONS) when the tables change
METRIC_DIRECTION_KEY = "metric_direction"  # meta: 'maximize' (the default) or 'minimize', for readers
DESCRIPTION_KEY = "description"  # meta: the setup in JSON (strategy, format...; see stored.describe), for readers

MODEL_STATUSES = frozenset(
    {"initialized", "frozen", "training", "trained", "failed", "interrupted", "invalid", "retrying"}
)
EXPERIMENT_STATUSES = frozenset({"running", "stopped", "done", "failed"})

Metric = float | dict[str, Any]

# Version 2: the entries of the strategy state's append-only lists, one row each (see save_strategy_state)
_STRATEGY_LOG = """CREATE TABLE strategy_log (
        path TEXT NOT NULL, seq INTEGER NOT NULL, entry BLOB NOT NULL, PRIMARY KEY (path, seq)) WITHOUT ROWID"""
_SCHEMA = (
    """CREATE TABLE experiment (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        experiment_id TEXT NOT NULL, name TEXT NOT NULL, config TEXT NOT NULL,
        status TEXT NOT NULL, pid INTEGER, created REAL NOT NULL, updated REAL NOT NULL)""",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE model (
        model_id INTEGER PRIMARY KEY, sample TEXT NOT NULL, payload BLOB, format TEXT NOT NULL,
        status TEXT NOT NULL, error TEXT, log_path TEXT, trial_id TEXT, final TEXT,
        created REAL NOT NULL, updated REAL NOT NULL)""",
    # Covering: listings (CLI, dashboard) read these columns without visiting rows, whose payload may
    # span overflow pages that SQLite walks to reach the columns stored after it.
    "CREATE INDEX model_by_status ON model (status, final, updated, format, trial_id, sample)",
    "CREATE INDEX model_by_updated ON model (updated)",  # the latest change, for change polling
    "CREATE INDEX model_by_trial ON model (trial_id)",
    """CREATE TABLE history (
        id INTEGER PRIMARY KEY, model_id INTEGER NOT NULL REFERENCES model (model_id),
        status TEXT NOT NULL, error TEXT, time REAL NOT NULL)""",
    "CREATE INDEX history_by_model ON history (model_id, id, status, time)",  # covering: durations
    """CREATE TABLE metric (
        model_id INTEGER NOT NULL REFERENCES model (model_id), seq INTEGER NOT NULL,
        value TEXT NOT NULL, time REAL NOT NULL, PRIMARY KEY (model_id, seq)) WITHOUT ROWID""",
    """CREATE TABLE strategy_state (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1), state BLOB NOT NULL, updated REAL NOT NULL)""",
    _STRATEGY_LOG,
)
# version -> the statements that bring a store of that version to the next one (one transaction, on open)
_MIGRATIONS: dict[int, tuple[str, ...]] = {1: (_STRATEGY_LOG,)}
_DAMAGED = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})  # sqlite_errorname of a damaged or foreign file
# sqlite_errorname prefixes of a write the file system refused (extended codes such as SQLITE_IOERR_WRITE)
_DISK_REFUSED = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN")
_DB_FILES = ("", "-wal", "-shm", "-journal")  # the database and the files SQLite keeps beside it
_CREATING = ".creating"  # suffix of a database being built by create(), before it is published
_KILL_AT = "NASFLOW_TEST_KILL_AT"
_TABLES_V1 = frozenset({"experiment", "meta", "model", "history", "metric", "strategy_state"})
_TABLES = {1: _TABLES_V1, 2: _TABLES_V1 | {"strategy_log"}}  # the tables of each version this nasflow reads
_MODEL_COLUMNS = "model_id, sample, {payload}, format, status, error, log_path, trial_id, final, created, updated"


# ----------------------------------------------------------------------------------------- errors


class StoreError(Exception):
    """Base of every store error; ``path`` is the database file concerned."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class StoreNotFoundError(StoreError):
    """The path holds no store (and the caller asked to open, not create)."""


class StoreExistsError(StoreError):
    """``create`` was asked to overwrite an existing file."""


class StoreLockedError(StoreError):
    """Another process writes the experiment (it holds the owner lock); ``pid`` is that process."""

    def __init__(self, message: str, path: Path | None = None, pid: int | None = None) -> None:
        super().__init__(message, path)
        self.pid = pid


class StoreIOError(StoreError):
    """The file system refused a write to the store (disk full, file size limit, I/O error, read-only)."""


class StoreCorruptError(StoreError):
    """The file is not a readable SQLite database, or lacks the store's tables."""


class StoreForeignError(StoreError):
    """The file is a SQLite database written by something other than nasflow."""


class StoreVersionError(StoreError):
    """The store's schema version is newer than (or unknown to) this nasflow."""


class StoreReadOnlyError(StoreError):
    """A write was attempted on a store opened read-only."""


class StoreClosedError(StoreError):
    """The store was used after ``close()``."""


class UnknownModelError(StoreError):
    """No model with the given id was ever added."""


class DuplicateModelError(StoreError):
    """A model id was added twice; ids are unique within an experiment."""


# ---------------------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One status transition of a model, in the order it happened."""

    status: str
    time: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MetricsRecord:
    """Reported metrics of a model: intermediates in report order, and the final one if any."""

    intermediates: list[Metric]
    final: Metric | None = None


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """Everything the store knows about one submitted model."""

    model_id: int
    sample: dict[str, Any]
    payload: bytes | None
    format: str
    status: str
    metrics: MetricsRecord
    error: str | None
    log_path: str | None
    trial_id: str | None
    history: list[StatusChange]
    created: float
    updated: float


@dataclass(frozen=True, slots=True)
class ExperimentRecord:
    """The experiment's own row: identity, config and run state."""

    experiment_id: str
    name: str
    config: dict[str, Any]
    status: str
    pid: int | None
    created: float
    updated: float


# ------------------------------------------------------------------------------------------ paths


def default_experiment_dir(experiment_id: str) -> Path:
    """Where an experiment lives when the user names no directory: ``~/.nasflow/experiments/<id>``."""
    return Path.home() / ".nasflow" / "experiments" / experiment_id


def database_path(path: str | os.PathLike[str]) -> Path:
    """The database file for ``path``: a directory (or a suffix-less path) means its ``nasflow.db``."""
    resolved = Path(path).expanduser()
    if resolved.is_dir():
        return resolved / DB_FILENAME
    if resolved.is_file() or resolved.suffix:
        return resolved
    return resolved / DB_FILENAME


# --------------------------------------------------------------------------------- value checking


def _dumps(value: Any, what: str) -> str:
    """Strict JSON text (no NaN), with an error that names the offending field."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} cannot be stored as JSON ({exc}); use numbers, strings, lists, dicts with string keys or None."
        ) from exc


def _json_dict(value: Any, what: str) -> str:
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise TypeError(f"{what} must be a dict with string keys, got {value!r}.")
    return _dumps(dict(value), what)


def _metric_text(value: Any, what: str) -> str:
    """The trial's own check (``normalize_metric``), again: the store never keeps what a trial could not report."""
    try:
        return _dumps(normalize_metric(value), what)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what}: {exc}") from exc


def _status(value: Any, allowed: frozenset[str], what: str) -> str:
    """Accept plain strings and str-valued enums (e.g. ``ModelStatus``)."""
    status = getattr(value, "value", value)
    if status not in allowed:
        raise ValueError(f"Unknown {what} {value!r}; expected one of {sorted(allowed)}.")
    return status


def _model_id(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"A model id must be an integer, got {value!r}.")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"A model id must be an integer, got {value!r}.") from None


def _status_filter(status: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if status is None:
        return None
    statuses = [status] if isinstance(status, str) or hasattr(status, "value") else list(status)
    return tuple(_status(each, MODEL_STATUSES, "model status") for each in statuses)


# ----------------------------------------------------------------------------------- opening files


def _connect(db: Path, mode: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), shareable across threads."""
    uri = f"{db.resolve().as_uri()}?mode={mode}"
    try:
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=5.0)
    except sqlite3.Error as exc:
        raise StoreError(f"Cannot open experiment store {db}: {exc}. Check the path and its permissions.", db) from exc


@contextmanager
def _naming_damage(db: Path, *, writing: bool = False) -> Iterator[None]:
    """Turn SQLite's errors about a damaged file into a StoreCorruptError that names the file, and when
    ``writing``, a write the file system refused (a full disk) into a StoreIOError that names it."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", None) or ""
        if writing and name.startswith(_DISK_REFUSED):
            cause = ("the file or its folder is not writable" if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN"))
                     else "its disk is full, a file size limit was reached, or the file system failed")
            raise StoreIOError(
                f"Cannot write experiment store {db}: {exc} ({cause}). Everything committed before is kept: free "
                f"space on the disk holding {db.parent} (or make it writable), then resume the experiment.", db
            ) from exc
        if name not in _DAMAGED:
            raise
        raise StoreCorruptError(
            f"{db} is not a readable SQLite database ({exc}): it is corrupt or not an experiment store. "
            f"Point to an experiment's {DB_FILENAME}, or restore the file from a backup.", db
        ) from exc


def _is_empty(db: Path) -> bool:
    """A 0-byte database (and no WAL content): a creation cut short by an older nasflow, or a truncated file."""
    wal = Path(f"{db}-wal")
    return db.stat().st_size == 0 and (not wal.exists() or wal.stat().st_size == 0)


def _empty_error(db: Path) -> StoreCorruptError:
    return StoreCorruptError(
        f"{db} is empty (0 bytes): the experiment's creation was interrupted before its store was written (or the "
        "file was truncated), so it records nothing to open or resume. Run the search again: creating the "
        "experiment replaces an empty store.", db
    )


def _check_identity(conn: sqlite3.Connection, db: Path) -> int:
    """Refuse anything but a nasflow store of a known version, without writing to the file; return
    its version."""
    try:
        with _naming_damage(db):
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise StoreError(
            f"Cannot read experiment store {db}: {exc}. Check that the file and its directory are readable "
            f"(a read-only reader also needs to create {db.name}-shm beside it) and not locked.", db
        ) from exc
    if app_id != APPLICATION_ID:
        raise StoreForeignError(
            f"{db} is a SQLite database but not a nasflow experiment store (application_id {app_id:#x}, "
            f"expected {APPLICATION_ID:#x}). Point to an experiment's {DB_FILENAME}.", db
        )
    if version > SCHEMA_VERSION:
        raise StoreVersionError(
            f"{db} has store schema version {version}, newer than the {SCHEMA_VERSION} this nasflow reads. "
            "Upgrade nasflow to open it.", db
        )
    if version not in _TABLES:
        raise StoreVersionError(
            f"{db} has unknown store schema version {version} (this nasflow reads version {SCHEMA_VERSION}); "
            "it was not written by a released nasflow. Re-run the experiment to get a fresh store.", db
        )
    missing = _TABLES[version] - tables
    if missing:
        raise StoreCorruptError(
            f"{db} is a nasflow store missing tables {sorted(missing)}; it is damaged. Restore it from a backup.", db
        )
    return version


def _migrate(conn: sqlite3.Connection, db: Path, version: int) -> None:
    """Bring an older store to ``SCHEMA_VERSION`` in one transaction (a crash leaves the old version)."""
    with _naming_damage(db, writing=True):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for each in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[each]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _remove_files(db: Path) -> None:
    for suffix in _DB_FILES:
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def _lock_path(db: Path) -> Path:
    return db.with_name(f"{db.name}.lock")


def _kill_point(point: str) -> None:
    """Tests only: die here (SIGKILL, as a crash would) when ``NASFLOW_TEST_KILL_AT`` names this point."""
    if os.environ.get(_KILL_AT) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _own(db: Path, experiment: str) -> OwnerLock:
    """The owner lock of the store ``db`` (a file beside it), making its folder (0700) if needed."""
    for _ in range(10):  # the folder may vanish under us: a refused start removing the folder it made
        try:
            if not db.parent.exists():
                db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(db.parent, 0o700)  # whatever the umask
            return OwnerLock.acquire(_lock_path(db))
        except FileNotFoundError:
            continue
        except LockHeld as held:
            who = f"process {held.pid}" if held.pid else "another process"
            raise StoreLockedError(
                f"Experiment {experiment!r} is running in {who}, which writes its store {db}; one process writes "
                f"an experiment at a time. Wait for it to end or stop it (`nasflow resume {experiment}` then "
                "continues it), or choose another experiment id.", db, held.pid
            ) from None
    raise StoreError(f"Cannot lock {_lock_path(db)}: its folder keeps disappearing.", db)


def _remove_leftovers(db: Path) -> None:
    """Databases left half-built by a killed create(); only called under the owner lock, so none is in use."""
    for leftover in db.parent.glob(f".{glob.escape(db.name)}.*{_CREATING}*"):
        leftover.unlink(missing_ok=True)


def _exists_error(db: Path, experiment: str) -> StoreExistsError:
    return StoreExistsError(
        f"{db} already exists: experiment {experiment!r} was created before. Resume it (`nasflow resume "
        f"{experiment}`, NasExperiment.resume() or ExperimentStore.open()), or choose another experiment id.", db
    )


def _build(db: Path, row: tuple[str, str, str], meta: list[tuple[str, str]]) -> Path:
    """The complete database, committed under a temporary name beside ``db`` (0600, rollback journal)."""
    temp = db.with_name(f".{db.name}.{os.getpid()}-{secrets.token_hex(4)}{_CREATING}")
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    try:
        os.chmod(temp, 0o600)  # whatever the umask; SQLite gives its -journal, -wal and -shm the same mode
        _kill_point("store-temp-created")
        conn = _connect(temp, "rw")
        try:
            with _naming_damage(db, writing=True):
                now = time.time()
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("INSERT INTO experiment VALUES (1, ?, ?, ?, 'running', ?, ?, ?)",
                             (*row, os.getpid(), now, now))
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
        finally:
            conn.close()
    except BaseException:
        _remove_files(temp)
        raise
    _kill_point("store-temp-committed")
    return temp


def _publish(temp: Path, db: Path, experiment: str) -> None:
    """Give the finished database its name, durably; never replaces a file that is there."""
    try:
        os.link(temp, db)
    except FileExistsError:
        raise _exists_error(db, experiment) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP):
            raise
        if db.exists():  # no hard links on this file system: under the owner lock a checked rename is as safe
            raise _exists_error(db, experiment) from None
        os.rename(temp, db)
    directory = os.open(db.parent, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    _kill_point("store-published")


def _configure_writer(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # the WalCheckpointer's thread checkpoints, not commits


# ------------------------------------------------------------------------------------------ store


class ExperimentStore:
    """Read and write one experiment's database; build it with :meth:`create` or :meth:`open`.

    Thread-safe: one lock guards the connection. Each write method is one committed transaction, or
    part of the enclosing ``batch()``.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, read_only: bool, owner: OwnerLock | None = None,
                 made_dir: bool | None = None, version: int = SCHEMA_VERSION) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._version = version  # an older store opened read-only keeps its version (and tables)
        self._path = path
        self._read_only = read_only
        self._owner = owner  # the owner lock a writer holds until close()
        self._made_dir = made_dir  # set by create(): whether it made the folder (what discard() removes)
        self._lock = threading.RLock()  # reentrant: the writes inside batch() take it again
        self._batched = False  # a batch() transaction is open (in the thread holding the lock)
        self._batch_void = False  # a write inside the open batch raised: the batch must not commit
        self._on_commit: list[Callable[[], None]] = []  # after_commit callbacks waiting for the open batch
        self._checkpointer = None if read_only else WalCheckpointer(path)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], experiment_id: str, name: str, config: Mapping[str, Any],
        meta: Mapping[str, Any] | None = None,
    ) -> ExperimentStore:
        """A new store at ``path`` (a directory, or the database file), for the calling process.

        The creator takes the owner lock first and keeps it: the experiment starts as ``'running'``
        with this process's pid. Atomic: the schema, the experiment's row and ``meta`` (e.g. the setup
        a resume needs) are committed under a temporary name beside the database, then published with
        a hard link, which never overwrites; so ``path`` holds no store or a complete one, whenever the
        process dies. A second creator of the same store is refused and removes only its own files.
        """
        db = database_path(path)
        experiment = str(experiment_id)
        config_text = _json_dict(config, "Experiment config")
        rows = [(str(key), _dumps(value, f"Meta value for {key!r}")) for key, value in (meta or {}).items()]
        made_dir = not db.parent.exists()
        owner = _own(db, experiment)
        try:
            _remove_leftovers(db)
            if db.exists() and not _is_empty(db):
                raise _exists_error(db, experiment)
            _remove_files(db)  # an empty file records nothing (see _is_empty): replace it
            temp = _build(db, (experiment, str(name), config_text), rows)
            try:
                _publish(temp, db, experiment)
            finally:
                _remove_files(temp)
            conn = _connect(db, "rw")
            try:
                with _naming_damage(db, writing=True):
                    _configure_writer(conn)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            owner.release()
            raise
        return cls(conn, db, read_only=False, owner=owner, made_dir=made_dir)

    @classmethod
    def open(cls, path: str | os.PathLike[str], read_only: bool = False) -> ExperimentStore:
        """An existing store; ``read_only`` opens with SQLite ``mode=ro`` and refuses every write.

        A writer takes the owner lock first (refused at once, naming the holder's pid, while another
        process writes the experiment); readers never take it.
        """
        db = database_path(path)
        if not db.is_file():
            raise StoreNotFoundError(
                f"No experiment store at {db}. Check the experiment directory, or create one with "
                "ExperimentStore.create().", db
            )
        if _is_empty(db):
            raise _empty_error(db)
        if not read_only:  # a foreign or damaged file is refused before a lock file is put beside it
            cls.open(db, read_only=True).close()
        owner = None if read_only else _own(db, db.parent.name)
        try:
            if owner is not None:
                _remove_leftovers(db)
            conn = _connect(db, "ro" if read_only else "rw")
            try:
                version = _check_identity(conn, db)
                if not read_only:
                    with _naming_damage(db, writing=True):
                        _configure_writer(conn)
                    if version < SCHEMA_VERSION:
                        _migrate(conn, db, version)
                        version = SCHEMA_VERSION
            except BaseException:
                conn.close()
                raise
        except BaseException:
            if owner is not None:
                owner.release()
            raise
        return cls(conn, db, read_only, owner, version=version)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def read_only(self) -> bool:
        return self._read_only

    def close(self) -> None:
        """Close the connection and release the owner lock (idempotent); the last writer to close folds
        the WAL into the file."""
        with self._lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._owner is not None:
                self._owner.release()
                self._owner = None

    def discard(self) -> None:
        """Delete this store, made by :meth:`create` and wanted no more (a start refused after it), with
        its folder if ``create`` made that. Removed before the owner lock is released, so nothing
        another process created is touched."""
        with self._lock:
            if self._made_dir is None or self._owner is None:
                raise StoreError(f"Only the process that created {self._path} may discard it, before closing it.",
                                 self._path)
            if self._checkpointer is not None:
                self._checkpointer.close()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._made_dir:
                shutil.rmtree(self._path.parent, ignore_errors=True)
            else:
                _remove_files(self._path)
                _lock_path(self._path).unlink(missing_ok=True)
            self._owner.release()
            self._owner = None

    def __enter__(self) -> ExperimentStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "closed" if self._conn is None else ("read-only" if self._read_only else "read-write")
        return f"ExperimentStore({str(self._path)!r}, {mode})"

    # -- transactions -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosedError(f"The experiment store {self._path} is closed; open it again to use it.", self._path)
        return self._conn

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The writes made in the body (by this thread) commit together as one transaction: all of them
        or none survive a crash, and they cost one commit instead of one each. A write that raises voids
        the batch: nothing of it is committed, and leaving the body raises even if the error was caught
        there. Keep the body short: the store's other threads wait for it."""
        with self._write() as conn:
            outer, self._batched = self._batched, True
            if not outer:
                self._batch_void, self._on_commit = False, []
            try:
                yield
            finally:
                self._batched = outer
            if self._batch_void:
                raise StoreError(f"A write to {self._path} failed inside a batch, so none of the batch's writes "
                                 "was committed.", self._path)
            _check_batch_alive(conn, self._path)
        if not outer:
            callbacks, self._on_commit = self._on_commit, []
            for callback in callbacks:
                callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the writes made so far are committed: now outside a batch, when the
        batch commits inside one (never, if it fails). For callers that keep track of what is stored."""
        with self._lock:
            if self._batched:
                self._on_commit.append(callback)
                return
        callback()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed on exit and rolled back if the body raises; inside ``batch()``,
        part of the batch's transaction."""
        with self._lock:
            conn = self._connection()
            if self._read_only:
                raise StoreReadOnlyError(
                    f"{self._path} is open read-only; only the experiment process writes it "
                    "(ExperimentStore.open(path) without read_only=True).", self._path
                )
            with _naming_damage(self._path, writing=True):
                if self._batched:  # part of the batch's transaction
                    try:
                        yield conn
                    except BaseException:
                        self._batch_void = True
                        raise
                    return
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            assert self._checkpointer is not None
            self._checkpointer.committed()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction, so multi-query reads see a single snapshot while the writer runs (inside
        ``batch()``, the batch's own transaction, which sees its writes)."""
        with self._lock:
            conn = self._connection()
            if self._batched:
                yield conn
                return
            with _naming_damage(self._path):
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")

    def snapshot(self) -> AbstractContextManager[sqlite3.Connection]:
        """A read transaction on the store's connection for readers with their own SQL (the dashboard's
        queries): one consistent snapshot while the writer runs."""
        return self._read()

    def _touch(self, conn: sqlite3.Connection, model_id: int, now: float, **columns: Any) -> None:
        """Set ``columns`` (internal names only) and ``updated`` on a model row; unknown ids raise."""
        sets = "".join(f"{name} = ?, " for name in columns)
        args = (*columns.values(), now, model_id)
        cursor = conn.execute(f"UPDATE model SET {sets}updated = ? WHERE model_id = ?", args)
        if cursor.rowcount == 0:
            raise UnknownModelError(
                f"Model {model_id} is not in {self._path}; add it with add_model() first.", self._path
            )

    # -- experiment ---------------------------------------------------------------------------

    def experiment(self) -> ExperimentRecord:
        """The experiment's identity, config and run state."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT experiment_id, name, config, status, pid, created, updated FROM experiment"
            ).fetchone()
        experiment_id, name, config, status, pid, created, updated = row
        return ExperimentRecord(experiment_id, name, json.loads(config), status, pid, created, updated)

    def config(self) -> dict[str, Any]:
        """The experiment config as given to :meth:`create`."""
        return self.experiment().config

    def set_experiment_status(self, status: str, pid: int | None = None) -> None:
        """Record the run state; ``'running'`` without a pid records this process's pid."""
        status = _status(status, EXPERIMENT_STATUSES, "experiment status")
        if status == "running" and pid is None:
            pid = os.getpid()
        with self._write() as conn:
            conn.execute("UPDATE experiment SET status = ?, pid = ?, updated = ?", (status, pid, time.time()))

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` (e.g. engine state), replacing any previous one."""
        text = _dumps(value, f"Meta value for {key!r}")
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (str(key), text))

    def get_meta(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (str(key),)).fetchone()
        return default if row is None else json.loads(row[0])

    def metric_direction(self) -> MetricDirection:
        """Whether the experiment's metric is better higher (``'maximize'``) or lower (``'minimize'``)."""
        return "minimize" if self.get_meta(METRIC_DIRECTION_KEY) == "minimize" else "maximize"

    def save_strategy_state(self, state: bytes | None, *, appends: Iterable[tuple[str, int, bytes]] = (),
                            reset: Iterable[str] = ()) -> None:
        """Save the strategy's progress in one transaction, so a crash keeps the last save whole:
        the opaque state blob (only the latest is kept; None leaves it as it is), and the entries of
        its append-only logs, ``(path, seq, entry)`` each, after dropping the logs named in ``reset``."""
        if state is not None and not isinstance(state, (bytes, bytearray, memoryview)):
            raise TypeError(f"Strategy state must be bytes, got {type(state).__name__}.")
        rows = [(str(path), operator.index(seq), bytes(entry)) for path, seq, entry in appends]
        with self._write() as conn:
            conn.executemany("DELETE FROM strategy_log WHERE path = ?", [(str(path),) for path in reset])
            conn.executemany("INSERT OR REPLACE INTO strategy_log VALUES (?, ?, ?)", rows)  # a save retried
            if state is not None:
                conn.execute("INSERT OR REPLACE INTO strategy_state VALUES (1, ?, ?)", (bytes(state), time.time()))

    def load_strategy_state(self) -> bytes | None:
        """The latest strategy state, or None if the strategy never saved one."""
        with self._read() as conn:
            row = conn.execute("SELECT state FROM strategy_state").fetchone()
        return None if row is None else bytes(row[0])

    def load_strategy_log(self) -> dict[str, list[bytes]]:
        """The entries of the strategy state's append-only logs: path -> entries in order."""
        if self._version < 2:  # an older store, read-only: it has no logs
            return {}
        logs: dict[str, list[bytes]] = defaultdict(list)
        with self._read() as conn:
            for path, entry in conn.execute("SELECT path, entry FROM strategy_log ORDER BY path, seq"):
                logs[path].append(bytes(entry))
        return dict(logs)

    # -- model writes -------------------------------------------------------------------------

    def add_model(
        self,
        model_id: int,
        sample: Mapping[str, Any],
        *,
        format: str,
        payload: bytes | None = None,
        status: str = "initialized",
    ) -> None:
        """Record a submitted model with its sample, format name and serialized payload."""
        model_id = _model_id(model_id)
        status = _status(status, MODEL_STATUSES, "model status")
        sample_text = _json_dict(sample, f"Sample of model {model_id}")
        blob = None if payload is None else bytes(payload)
        now = time.time()
        with self._write() as conn:
            try:
                conn.execute(
                    "INSERT INTO model (model_id, sample, payload, format, status, created, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (model_id, sample_text, blob, str(format), status, now, now),
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateModelError(
                    f"Model {model_id} is already in {self._path}; model ids must be unique in an experiment.",
                    self._path,
                ) from exc
            conn.execute("INSERT INTO history (model_id, status, time) VALUES (?, ?, ?)", (model_id, status, now))

    def set_status(self, model_id: int, status: str, error: str | None = None) -> None:
        """Move a model to ``status`` and log the transition; ``error`` is the reason for this status.

        The model's ``error`` always describes its current status (None clears it); the history keeps
        every earlier error.
        """
        model_id = _model_id(model_id)
        status = _status(status, MODEL_STATUSES, "model status")
        error = None if error is None else str(error)
        now = time.time()
        with self._write() as conn:
            self._touch(conn, model_id, now, status=status, error=error)
            conn.execute(
                "INSERT INTO history (model_id, status, error, time) VALUES (?, ?, ?, ?)",
                (model_id, status, error, now),
            )

    def add_intermediate(self, model_id: int, value: Metric) -> int:
        """Append an intermediate metric; returns its 1-based sequence number for the model."""
        model_id = _model_id(model_id)
        text = _metric_text(value, f"Intermediate metric of model {model_id}")
        now = time.time()
        with self._write() as conn:
            self._touch(conn, model_id, now)
            last = conn.execute("SELECT MAX(seq) FROM metric WHERE model_id = ?", (model_id,)).fetchone()[0]
            seq = (last or 0) + 1
            conn.execute("INSERT INTO metric VALUES (?, ?, ?, ?)", (model_id, seq, text, now))
        return seq

    def set_final(self, model_id: int, value: Metric) -> None:
        """Record the model's final metric (replacing a previous one, e.g. after a retry)."""
        model_id = _model_id(model_id)
        text = _metric_text(value, f"Final metric of model {model_id}")
        with self._write() as conn:
            self._touch(conn, model_id, time.time(), final=text)

    def clear_final(self, model_id: int) -> None:
        """Forget the final metric of an earlier attempt (the model runs again); intermediates stay."""
        model_id = _model_id(model_id)
        with self._write() as conn:
            self._touch(conn, model_id, time.time(), final=None)

    def count_intermediates(self, model_id: int, since: float = -math.inf) -> int:
        """How many intermediates of the model were recorded at or after ``since`` (``time.time()``)."""
        model_id = _model_id(model_id)
        with self._read() as conn:
            return conn.execute("SELECT COUNT(*) FROM metric WHERE model_id = ? AND time >= ?",
                                (model_id, since)).fetchone()[0]

    def set_sample(self, model_id: int, sample: Mapping[str, Any]) -> None:
        """Replace a model's sample (a one-shot search's record follows its current best architecture)."""
        model_id = _model_id(model_id)
        text = _json_dict(sample, f"Sample of model {model_id}")
        with self._write() as conn:
            self._touch(conn, model_id, time.time(), sample=text)

    def set_trial(
        self, model_ids: Iterable[int], trial_id: str, log_path: str | os.PathLike[str] | None = None
    ) -> None:
        """Attach models to the trial that trains them (several share one trial under CGO)."""
        ids = [_model_id(each) for each in model_ids]
        if not ids:
            raise ValueError(f"set_trial({trial_id!r}) needs at least one model id.")
        log = None if log_path is None else os.fspath(log_path)
        now = time.time()
        with self._write() as conn:
            for model_id in ids:
                self._touch(conn, model_id, now, trial_id=str(trial_id), log_path=log)

    # -- model reads --------------------------------------------------------------------------

    def model(self, model_id: int) -> ModelRecord:
        """One model with its metrics and history; unknown ids raise :class:`UnknownModelError`."""
        model_id = _model_id(model_id)
        with self._read() as conn:
            records = self._load_models(conn, "WHERE model_id = ?", (model_id,), include_payload=True)
        if not records:
            raise UnknownModelError(f"Model {model_id} is not in {self._path}.", self._path)
        return records[0]

    def models(
        self, status: str | Iterable[str] | None = None, *, include_payload: bool = True
    ) -> list[ModelRecord]:
        """Models in id order, optionally only those in ``status`` (one or several).

        ``include_payload=False`` skips the blobs (their ``payload`` is None) for cheap listings.
        """
        statuses = _status_filter(status)
        where, args = ("", ()) if statuses is None else _in_clause(statuses)
        with self._read() as conn:
            return self._load_models(conn, where, args, include_payload=include_payload)

    def count_models(self, statuses: str | Iterable[str] | None = None) -> int:
        """How many models there are, optionally only in the given status(es)."""
        selected = _status_filter(statuses)
        where, args = ("", ()) if selected is None else _in_clause(selected)
        with self._read() as conn:
            return conn.execute(f"SELECT COUNT(*) FROM model {where}", args).fetchone()[0]

    @staticmethod
    def _load_models(
        conn: sqlite3.Connection, where: str, args: Sequence[Any], *, include_payload: bool
    ) -> list[ModelRecord]:
        """Models matching ``where`` plus their metrics and history, in three queries."""
        columns = _MODEL_COLUMNS.format(payload="payload" if include_payload else "NULL")
        rows = conn.execute(f"SELECT {columns} FROM model {where} ORDER BY model_id", args).fetchall()
        if not rows:
            return []
        subset = f"SELECT model_id FROM model {where}"
        intermediates: dict[int, list[Metric]] = defaultdict(list)
        for model_id, value in conn.execute(
            f"SELECT model_id, value FROM metric WHERE model_id IN ({subset}) ORDER BY model_id, seq", args
        ):
            intermediates[model_id].append(json.loads(value))
        history: dict[int, list[StatusChange]] = defaultdict(list)
        for model_id, status, error, changed in conn.execute(
            f"SELECT model_id, status, error, time FROM history WHERE model_id IN ({subset}) ORDER BY id", args
        ):
            history[model_id].append(StatusChange(status, changed, error))
        return [_model_record(row, intermediates[row[0]], history[row[0]]) for row in rows]


def rank_trained(records: Iterable[ModelRecord], direction: MetricDirection = "maximize") -> list[ModelRecord]:
    """Trained models with a final metric, best first by its number (``'default'`` of a dict) in
    ``direction``; ties keep id order."""
    trained = [r for r in records if r.status == "trained" and r.metrics.final is not None]
    return sorted(trained, key=lambda r: -metric_score(r.metrics.final, direction))  # type: ignore[arg-type, operator]


def _check_batch_alive(conn: sqlite3.Connection, db: Path) -> None:
    """A batch whose transaction SQLite itself rolled back (it does on a full disk) commits nothing."""
    if not conn.in_transaction:
        raise StoreError(f"A write to {db} failed and SQLite rolled back the batch it was part of; nothing of "
                         "the batch was committed.", db)


def _in_clause(statuses: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    return f"WHERE status IN ({', '.join('?' * len(statuses))})", statuses


def _model_record(row: Sequence[Any], intermediates: list[Metric], history: list[StatusChange]) -> ModelRecord:
    model_id, sample, payload, fmt, status, error, log_path, trial_id, final, created, updated = row
    return ModelRecord(
        model_id=model_id,
        sample=json.loads(sample),
        payload=None if payload is None else bytes(payload),
        format=fmt,
        status=status,
        metrics=MetricsRecord(intermediates, None if final is None else json.loads(final)),
        error=error,
        log_path=log_path,
        trial_id=trial_id,
        history=history,
        created=created,
        updated=updated,
    )
