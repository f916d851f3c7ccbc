"""The experiment store on real SQLite files: round trips, ordering, read-only and damaged files, crashes."""

from __future__ import annotations

import enum
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import HANG_GUARD_S, reaped, wait_until

from nasflow.experiment import store as store_module
from nasflow.experiment.store import (
    APPLICATION_ID,
    DB_FILENAME,
    SCHEMA_VERSION,
    DuplicateModelError,
    ExperimentStore,
    StatusChange,
    StoreClosedError,
    StoreCorruptError,
    StoreError,
    StoreExistsError,
    StoreForeignError,
    StoreLockedError,
    StoreNotFoundError,
    StoreReadOnlyError,
    StoreVersionError,
    UnknownModelError,
    database_path,
    default_experiment_dir,
)

CONFIG = {"strategy": "random", "trial_concurrency": 2, "search": {"max_trials": 10, "tags": ["a", None]}}


@pytest.fixture
def store(tmp_path: Path):
    with ExperimentStore.create(tmp_path / "exp", "exp1", "my experiment", CONFIG) as created:
        yield created


@contextmanager
def _raw(db: Path, mode: str = "ro") -> Iterator[sqlite3.Connection]:
    """A plain SQLite connection (autocommit), to look at or damage the file without the store."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode={mode}", uri=True, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _snapshot(db: Path) -> tuple[bytes, int]:
    return db.read_bytes(), db.stat().st_mtime_ns


def _fill(store: ExperimentStore) -> None:
    sample = {"op": "conv3x3", "width": 64, "skip": None, "path": [0, 1]}
    store.add_model(1, sample, format="simplified", payload=b"\0p")
    store.add_model(2, {"op": "maxpool"}, format="graph")
    store.set_trial([1, 2], "trial-a", "/logs/trial-a.log")
    store.set_status(1, "training")
    store.add_intermediate(1, 0.25)
    store.add_intermediate(1, {"default": 0.5, "loss": 1.5})
    store.set_final(1, 0.75)
    store.set_status(1, "trained")
    store.set_status(2, "failed", error="CUDA out of memory")
    store.set_meta("engine", {"next_model_id": 3})
    store.save_strategy_state(b"strategy-1")


# ------------------------------------------------------------------------------------ round trips


def test_create_lays_out_an_identified_wal_database(store: ExperimentStore, tmp_path: Path) -> None:
    db = tmp_path / "exp" / DB_FILENAME
    assert store.path == db and db.is_file()
    with _raw(db) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_experiment_record_round_trips(store: ExperimentStore, tmp_path: Path) -> None:
    store.close()
    with ExperimentStore.open(tmp_path / "exp") as reopened:
        record = reopened.experiment()
        assert (record.experiment_id, record.name, record.config) == ("exp1", "my experiment", CONFIG)
        assert (record.status, record.pid) == ("running", os.getpid())
        assert record.created <= record.updated
        assert reopened.config() == CONFIG
        reopened.set_experiment_status("done")
        assert (reopened.experiment().status, reopened.experiment().pid) == ("done", None)
        reopened.set_experiment_status("running")
        assert reopened.experiment().pid == os.getpid()


def test_models_round_trip_through_reopen(store: ExperimentStore) -> None:
    _fill(store)
    store.close()
    with ExperimentStore.open(store.path) as reopened:
        first, second = reopened.models()
    assert first.model_id == 1
    assert first.sample == {"op": "conv3x3", "width": 64, "skip": None, "path": [0, 1]}
    assert (first.payload, first.format, first.status, first.error) == (b"\0p", "simplified", "trained", None)
    assert first.metrics.intermediates == [0.25, {"default": 0.5, "loss": 1.5}]
    assert first.metrics.final == 0.75
    assert (first.trial_id, first.log_path) == ("trial-a", "/logs/trial-a.log")
    assert [change.status for change in first.history] == ["initialized", "training", "trained"]
    assert first.created <= first.updated
    assert (second.payload, second.format, second.status) == (None, "graph", "failed")
    assert second.error == "CUDA out of memory"
    assert second.metrics.intermediates == [] and second.metrics.final is None
    assert second.trial_id == "trial-a"


def test_meta_and_strategy_state(store: ExperimentStore) -> None:
    assert store.get_meta("engine") is None and store.get_meta("engine", 7) == 7
    assert store.load_strategy_state() is None
    store.set_meta("engine", {"queue": [1, 2]})
    store.set_meta("engine", {"queue": [3]})
    store.save_strategy_state(b"old")
    store.save_strategy_state(bytearray(b"new"))
    assert store.get_meta("engine") == {"queue": [3]}
    assert store.load_strategy_state() == b"new"


def test_model_lookup_filter_and_count(store: ExperimentStore) -> None:
    class Status(enum.Enum):  # e.g. ModelStatus: stored by value
        TRAINED = "trained"

    _fill(store)
    store.add_model(3, {}, format="simplified", status="frozen")
    assert store.model(1).metrics.final == 0.75
    assert [m.model_id for m in store.models("failed")] == [2]
    assert [m.model_id for m in store.models(["trained", "frozen"])] == [1, 3]
    assert [m.model_id for m in store.models(Status.TRAINED)] == [1]
    assert store.models("invalid") == []
    assert [m.payload for m in store.models(include_payload=False)] == [None, None, None]
    assert store.count_models() == 3
    assert store.count_models("trained") == 1
    assert store.count_models(["failed", "frozen"]) == 2


def test_database_path_and_default_dir(tmp_path: Path) -> None:
    assert database_path(tmp_path) == tmp_path / DB_FILENAME
    assert database_path(tmp_path / "new-exp") == tmp_path / "new-exp" / DB_FILENAME
    assert database_path(tmp_path / "other.db") == tmp_path / "other.db"
    assert default_experiment_dir("abc") == Path.home() / ".nasflow" / "experiments" / "abc"


# ------------------------------------------------------------------------------------- ordering


def test_history_keeps_transition_order_and_errors(store: ExperimentStore) -> None:
    store.add_model(5, {"x": 1}, format="simplified")
    steps = [("frozen", None), ("training", None), ("failed", "boom"), ("retrying", None), ("training", None),
             ("trained", None)]
    for status, error in steps:
        store.set_status(5, status, error=error)
    record = store.model(5)
    assert [(c.status, c.error) for c in record.history] == [("initialized", None), *steps]
    times = [change.time for change in record.history]
    assert times == sorted(times)
    assert record.status == "trained" and record.error is None
    assert isinstance(record.history[0], StatusChange)


def test_intermediates_keep_report_order_per_model(store: ExperimentStore) -> None:
    store.add_model(1, {}, format="simplified")
    store.add_model(2, {}, format="simplified")
    seqs = []
    for step in range(30):
        seqs.append(store.add_intermediate(1, step))
        store.add_intermediate(2, {"default": -step})
    assert seqs == list(range(1, 31))
    assert store.model(1).metrics.intermediates == [float(step) for step in range(30)]
    assert store.model(2).metrics.intermediates == [{"default": float(-step)} for step in range(30)]
    store.set_final(1, {"default": 0.1, "acc": 0.9})
    store.set_final(1, 0.2)
    assert store.model(1).metrics.final == 0.2


# ------------------------------------------------------------------------------- bad arguments


def test_invalid_values_are_refused(store: ExperimentStore) -> None:
    store.add_model(1, {}, format="simplified")
    with pytest.raises(ValueError, match="Unknown model status 'done'"):
        store.set_status(1, "done")
    with pytest.raises(ValueError, match="experiment status"):
        store.set_experiment_status("trained")
    with pytest.raises(TypeError, match="'default'"):
        store.add_intermediate(1, {"acc": 0.5})
    for bad in (True, "0.5", None):
        with pytest.raises(TypeError, match="number"):
            store.set_final(1, bad)
    with pytest.raises(ValueError, match="finite"):
        store.add_intermediate(1, float("nan"))
    with pytest.raises(TypeError, match="JSON"):
        store.add_model(2, {"op": object()}, format="simplified")
    with pytest.raises(TypeError, match="string keys"):
        store.add_model(2, {1: "a"}, format="simplified")
    with pytest.raises(TypeError, match="integer"):
        store.add_model("2", {}, format="simplified")
    with pytest.raises(ValueError, match="at least one"):
        store.set_trial([], "t")
    assert store.count_models() == 1 and store.model(1).metrics.intermediates == []


def test_duplicate_and_unknown_models(store: ExperimentStore) -> None:
    store.add_model(1, {"a": 1}, format="simplified")
    with pytest.raises(DuplicateModelError, match="Model 1 is already"):
        store.add_model(1, {"a": 2}, format="simplified")
    assert store.model(1).sample == {"a": 1}
    for call in (lambda: store.set_status(9, "training"), lambda: store.add_intermediate(9, 1.0),
                 lambda: store.set_final(9, 1.0), lambda: store.model(9)):
        with pytest.raises(UnknownModelError, match="Model 9"):
            call()
    with pytest.raises(UnknownModelError):
        store.set_trial([1, 9], "t")
    assert store.model(1).trial_id is None  # the whole call rolled back


def test_closed_store_refuses_use(store: ExperimentStore) -> None:
    store.close()
    store.close()
    with pytest.raises(StoreClosedError, match="closed"):
        store.models()
    assert "closed" in repr(store)


def test_concurrent_writers_from_threads(store: ExperimentStore) -> None:
    def work(offset: int) -> None:
        for i in range(offset, offset + 50):
            store.add_model(i, {"i": i}, format="simplified")
            store.add_intermediate(i, float(i))
            store.set_status(i, "trained")

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count_models("trained") == 200
    assert all(m.metrics.intermediates == [float(m.model_id)] for m in store.models())


def test_last_close_folds_the_wal_into_the_file(tmp_path: Path) -> None:
    writer = ExperimentStore.create(tmp_path / "a", "a", "a", {})
    writer.add_model(1, {}, format="simplified")
    reader = ExperimentStore.open(tmp_path / "a", read_only=True)
    reader.close()
    writer.close()
    assert not Path(f"{writer.path}-wal").exists()
    copy = writer.path.with_name("copy.db")  # the database file alone has every row
    copy.write_bytes(writer.path.read_bytes())
    with ExperimentStore.open(copy, read_only=True) as alone:
        assert alone.count_models() == 1


# -------------------------------------------------------------------------------- opening files


def test_create_refuses_an_existing_file(store: ExperimentStore, tmp_path: Path) -> None:
    with pytest.raises(StoreLockedError, match=f"running in process {os.getpid()}"):  # its writer has it open
        ExperimentStore.create(tmp_path / "exp", "again", "again", {})
    store.close()
    with pytest.raises(StoreExistsError, match="ExperimentStore.open"):
        ExperimentStore.create(tmp_path / "exp", "again", "again", {})
    other = tmp_path / "notes.db"
    other.write_bytes(b"keep me")
    with pytest.raises(StoreExistsError, match=str(other)):
        ExperimentStore.create(other, "x", "x", {})
    assert other.read_bytes() == b"keep me"


def test_open_missing_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for read_only in (False, True):
        with pytest.raises(StoreNotFoundError, match=str(missing / DB_FILENAME)) as info:
            ExperimentStore.open(missing, read_only=read_only)
        assert "ExperimentStore.create" in str(info.value)
    assert not missing.exists()


def test_read_only_never_touches_the_database(store: ExperimentStore) -> None:
    _fill(store)
    store.close()
    before = _snapshot(store.path)
    with ExperimentStore.open(store.path, read_only=True) as reader:
        assert reader.read_only
        assert len(reader.models()) == 2 and reader.model(1).metrics.final == 0.75
        assert reader.count_models("trained") == 1 and reader.config() == CONFIG
        assert reader.get_meta("engine") == {"next_model_id": 3} and reader.load_strategy_state() == b"strategy-1"
        writes = [lambda: reader.add_model(7, {}, format="simplified"), lambda: reader.set_status(1, "failed"),
                  lambda: reader.add_intermediate(1, 1.0), lambda: reader.set_final(1, 1.0),
                  lambda: reader.set_trial([1], "t"), lambda: reader.save_strategy_state(b"x"),
                  lambda: reader.set_meta("k", 1), lambda: reader.set_experiment_status("stopped")]
        for write in writes:
            with pytest.raises(StoreReadOnlyError, match="read-only"):
                write()
        with pytest.raises(sqlite3.OperationalError, match="readonly"):  # SQLite itself refuses, too
            reader._connection().execute("DELETE FROM model")
    assert _snapshot(store.path) == before


def test_read_only_reader_follows_a_live_writer(store: ExperimentStore) -> None:
    store.add_model(1, {}, format="simplified")
    with ExperimentStore.open(store.path, read_only=True) as reader:
        assert reader.count_models() == 1
        store.add_model(2, {}, format="simplified")
        store.add_intermediate(2, 0.5)
        assert reader.model(2).metrics.intermediates == [0.5]


@pytest.mark.parametrize("content", [os.urandom(8192), b"not a database at all", b"SQLite format 3\0" + b"\xff" * 84])
@pytest.mark.parametrize("read_only", [False, True])
def test_corrupt_file_is_refused_untouched(tmp_path: Path, content: bytes, read_only: bool) -> None:
    bad = tmp_path / "garbage.db"
    bad.write_bytes(content)
    before = _snapshot(bad)
    with pytest.raises(StoreCorruptError, match="not a readable SQLite database") as info:
        ExperimentStore.open(bad, read_only=read_only)
    assert str(bad) in str(info.value) and info.value.path == bad
    assert _snapshot(bad) == before and sorted(os.listdir(tmp_path)) == ["garbage.db"]


@pytest.mark.parametrize("read_only", [False, True])
def test_foreign_sqlite_file_is_refused_untouched(tmp_path: Path, read_only: bool) -> None:
    foreign = tmp_path / "foreign.db"
    with _raw(foreign, "rwc") as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ada')")
    before = _snapshot(foreign)
    with pytest.raises(StoreForeignError, match="not a nasflow experiment store") as info:
        ExperimentStore.open(foreign, read_only=read_only)
    assert str(foreign) in str(info.value)
    assert _snapshot(foreign) == before and sorted(os.listdir(tmp_path)) == ["foreign.db"]




@pytest.mark.parametrize(("version", "message"), [(SCHEMA_VERSION + 1, "Upgrade nasflow"), (0, "unknown store schema")])
@pytest.mark.parametrize("read_only", [False, True])
def test_other_schema_versions_are_refused_untouched(
    store: ExperimentStore, version: int, message: str, read_only: bool
) -> None:
    store.close()
    with _raw(store.path, "rw") as conn:
        conn.execute(f"PRAGMA user_version = {version}")
    before = _snapshot(store.path)
    with pytest.raises(StoreVersionError, match=message) as info:
        ExperimentStore.open(store.path, read_only=read_only)
    assert str(store.path) in str(info.value)
    assert _snapshot(store.path) == before


def test_store_missing_tables_is_corrupt(store: ExperimentStore) -> None:
    store.close()
    with _raw(store.path, "rw") as conn:
        conn.execute("DROP TABLE metric")
    with pytest.raises(StoreCorruptError, match="missing tables"):
        ExperimentStore.open(store.path, read_only=True)


def test_damaged_pages_surface_as_corrupt_on_read(store: ExperimentStore) -> None:
    for model_id in range(200):
        store.add_model(model_id, {"text": "x" * 200}, format="simplified")
    store.close()
    data = store.path.read_bytes()
    store.path.write_bytes(data[:4096] + b"\xa5" * (len(data) - 4096))  # keep page 1 (schema), wreck the rest
    before = _snapshot(store.path)
    with ExperimentStore.open(store.path, read_only=True) as damaged:
        with pytest.raises(StoreCorruptError, match=str(store.path)):
            damaged.models()
    assert _snapshot(store.path) == before


def test_every_error_is_a_store_error() -> None:
    errors = [StoreNotFoundError, StoreExistsError, StoreCorruptError, StoreForeignError, StoreVersionError,
              StoreReadOnlyError, StoreClosedError, UnknownModelError, DuplicateModelError]
    assert all(issubclass(error, StoreError) for error in errors)


# --------------------------------------------------------------------------------- crash safety

# The start of every child script: load the store module given as argv[1] alone (it and its owner lock
# need only the standard library), so the child starts fast and runs the very file the test imported;
# a bare package stands in for nasflow.experiment without running that package's __init__.
_LOAD_STORE = textwrap.dedent(
    """
    import importlib, os, signal, sys, threading, time, types

    package = types.ModuleType("nasflow_store_child")
    package.__path__ = [os.path.dirname(sys.argv[1])]
    sys.modules[package.__name__] = package
    module = importlib.import_module("nasflow_store_child.store")
    """
)

_CHILD = _LOAD_STORE + textwrap.dedent(
    """
    def report(line):  # one write per line, after the commit it reports
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()

    store = module.ExperimentStore.create(sys.argv[2], "crash", "crash", {"seed": 0})
    report("created")

    def kill_soon():
        time.sleep(0.03)
        os.kill(os.getpid(), signal.SIGKILL)

    i = 0
    while True:
        store.add_model(i, {"i": i}, format="simplified", payload=bytes([i % 256]) * 64)
        report(f"model {i}")
        store.add_intermediate(i, i / 10)
        report(f"metric {i}")
        store.set_status(i, "trained")
        report(f"status {i}")
        if i == 20:
            threading.Thread(target=kill_soon, daemon=True).start()
        i += 1
    """
)


def test_sigkilled_writer_loses_no_committed_write(tmp_path: Path) -> None:
    exp_dir = tmp_path / "crashed"
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, store_module.__file__, str(exp_dir)],
        capture_output=True, text=True, timeout=HANG_GUARD_S,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    complete = child.stdout[: child.stdout.rfind("\n") + 1]  # the kill may cut the last line short
    lines = [line.split() for line in complete.splitlines()]
    assert lines[0] == ["created"]
    printed = [(kind, int(index)) for kind, index in lines[1:]]
    assert len(printed) > 60  # the kill came mid-run, after at least 21 models

    with ExperimentStore.open(exp_dir, read_only=True) as reopened:
        models = reopened.models()
    stored = set()
    for model in models:
        assert model.sample == {"i": model.model_id} and model.payload == bytes([model.model_id % 256]) * 64
        stored.add(("model", model.model_id))
        stored.update(("metric", model.model_id) for _ in model.metrics.intermediates)
        assert model.metrics.intermediates in ([], [model.model_id / 10])
        if model.status == "trained":
            stored.add(("status", model.model_id))
    assert set(printed) <= stored
    assert len(stored - set(printed)) <= 1  # at most the write committed just before the kill, unprinted
    with _raw(exp_dir / DB_FILENAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# ------------------------------------------------------------------ atomic creation, one owner

_CREATE = _LOAD_STORE + textwrap.dedent(
    """
    store = module.ExperimentStore.create(sys.argv[2], "made", "made", {"seed": 0}, meta={"setup": "the setup"})
    store.add_model(0, {"i": 0}, format="simplified")
    print("created", flush=True)
    """
)


def _run_child(script: str, *args: object, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script, store_module.__file__, *map(str, args)],
                          capture_output=True, text=True, timeout=HANG_GUARD_S,
                          env={**os.environ, **env})


def _leftovers(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if ".creating" in name)


@pytest.mark.parametrize("point", ["store-temp-created", "store-temp-committed", "store-published"])
def test_a_creation_killed_at_any_point_leaves_no_store_or_a_complete_one(tmp_path: Path, point: str) -> None:
    exp_dir = tmp_path / "made"
    child = _run_child(_CREATE, exp_dir, NASFLOW_TEST_KILL_AT=point)
    assert child.returncode == -signal.SIGKILL, child.stderr
    db = exp_dir / DB_FILENAME
    if point == "store-published":  # complete, setup included; the half-made file is someone's no more
        with ExperimentStore.open(exp_dir, read_only=True) as reader:
            assert reader.experiment().experiment_id == "made" and reader.get_meta("setup") == "the setup"
        assert _leftovers(exp_dir)  # not yet removed by the killed creator; taken for no store
        ExperimentStore.open(exp_dir).close()  # a writer (resume) clears it away
        assert _leftovers(exp_dir) == []
        with pytest.raises(StoreExistsError, match="nasflow resume made"):
            ExperimentStore.create(exp_dir, "made", "made", {})
        return
    assert not db.exists() and _leftovers(exp_dir)  # the half-made database never took the store's name
    with pytest.raises(StoreNotFoundError):
        ExperimentStore.open(exp_dir, read_only=True)
    again = _run_child(_CREATE, exp_dir)  # the same creation again simply works
    assert again.returncode == 0 and again.stdout == "created\n", again.stderr
    assert _leftovers(exp_dir) == []
    with ExperimentStore.open(exp_dir, read_only=True) as reader:
        assert reader.get_meta("setup") == "the setup" and reader.count_models() == 1


def test_an_empty_database_says_its_creation_was_interrupted_and_is_replaced(tmp_path: Path) -> None:
    exp_dir = tmp_path / "empty"
    exp_dir.mkdir()
    (exp_dir / DB_FILENAME).touch()  # what a creation killed before its first commit left, before it was atomic
    for read_only in (True, False):
        with pytest.raises(StoreCorruptError, match=r"is empty \(0 bytes\): the experiment.s creation was interrupted"):
            ExperimentStore.open(exp_dir, read_only=read_only)
    with ExperimentStore.create(exp_dir, "empty", "empty", {}) as store:
        assert store.experiment().experiment_id == "empty"
    (tmp_path / "truncated.db").write_bytes(b"SQLite format 3\0" + b"\0" * 20)  # not empty: never replaced
    with pytest.raises(StoreExistsError):
        ExperimentStore.create(tmp_path / "truncated.db", "t", "t", {})
    with pytest.raises(StoreCorruptError, match="not a readable SQLite database"):
        ExperimentStore.open(tmp_path / "truncated.db")


def test_the_folder_and_database_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        with ExperimentStore.create(tmp_path / "private", "p", "p", {}) as store:
            store.add_model(1, {}, format="simplified")
            with ExperimentStore.open(store.path, read_only=True) as reader:
                reader.count_models()
            names = sorted(os.listdir(store.path.parent))
            modes = {name: os.stat(store.path.parent / name).st_mode & 0o777 for name in names}
    finally:
        os.umask(previous)
    assert names == [DB_FILENAME, f"{DB_FILENAME}-shm", f"{DB_FILENAME}-wal", f"{DB_FILENAME}.lock"]
    assert set(modes.values()) == {0o600}, modes
    assert os.stat(tmp_path / "private").st_mode & 0o777 == 0o700


_HOLD = _LOAD_STORE + textwrap.dedent(
    """
    store = module.ExperimentStore.open(sys.argv[2])
    print("holding", flush=True)
    time.sleep(3600)  # until the test kills it
    """
)


def test_one_writer_at_a_time_the_lock_not_a_pid_decides(store: ExperimentStore, tmp_path: Path) -> None:
    with pytest.raises(StoreLockedError, match=f"running in process {os.getpid()}") as info:
        ExperimentStore.open(store.path)
    assert info.value.pid == os.getpid()
    with ExperimentStore.open(store.path, read_only=True) as reader:  # readers never take the lock
        assert reader.experiment().status == "running"
    store.close()

    with reaped(subprocess.Popen([sys.executable, "-c", _HOLD, store_module.__file__, str(store.path)],
                                 stdout=subprocess.PIPE, text=True)) as child:
        assert child.stdout is not None and child.stdout.readline() == "holding\n"
        with pytest.raises(StoreLockedError, match=f"running in process {child.pid}"):
            ExperimentStore.open(store.path)
        child.kill()  # SIGKILL: the OS drops the lock; the pid left in the lock file blocks nobody
        child.wait()
    assert (store.path.parent / f"{DB_FILENAME}.lock").read_text().strip() == str(child.pid)
    with ExperimentStore.open(store.path) as writer:
        writer.set_experiment_status("done")


# ------------------------------------------------------------------------- batches, checkpoints


def test_a_batch_commits_all_its_writes_at_once_or_none(store: ExperimentStore) -> None:
    store.add_model(0, {"i": 0}, format="simplified")
    with ExperimentStore.open(store.path, read_only=True) as reader:
        with store.batch():
            store.add_model(1, {"i": 1}, format="simplified", status="frozen")
            store.set_status(1, "training")
            store.add_intermediate(1, 0.5)
            assert store.model(1).status == "training"  # the batch reads its own writes
            assert reader.count_models() == 1  # others see none of them yet
        assert reader.model(1).status == "training" and reader.model(1).metrics.intermediates == [0.5]
        assert [change.status for change in reader.model(1).history] == ["frozen", "training"]

        with pytest.raises(RuntimeError, match="midway"), store.batch():
            store.set_final(1, 1.0)
            store.set_status(1, "trained")
            raise RuntimeError("midway")
        with pytest.raises(StoreError, match="failed inside a batch"), store.batch():
            store.set_final(1, 1.0)
            with pytest.raises(DuplicateModelError):  # caught, yet it voids the batch
                store.add_model(0, {"i": 9}, format="simplified")
        with pytest.raises(UnknownModelError), store.batch():
            store.set_final(1, 1.0)
            store.set_status(7, "trained")
        assert store.model(1).status == "training" and store.model(1).metrics.final is None
        assert reader.model(0).sample == {"i": 0}
    store.set_status(1, "trained")  # the store is usable after a failed batch
    assert store.count_models("trained") == 1


def test_commits_reach_the_database_file_while_the_writer_stays_open(store: ExperimentStore) -> None:
    """A background thread checkpoints (the writer's commits never wait for it): the file alone soon
    holds what was committed, without the WAL and without closing the store."""
    for i in range(20):
        store.add_model(i, {"i": i}, format="simplified")
    copy = store.path.with_name("copy.db")

    def the_file_alone_holds_every_model() -> bool:
        copy.write_bytes(store.path.read_bytes())
        with _raw(copy) as conn:
            return conn.execute("SELECT COUNT(*) FROM model").fetchone()[0] == 20

    wait_until(the_file_alone_holds_every_model, "the WAL to be checkpointed into the database file", interval=0.05)


_BATCH_CHILD = _LOAD_STORE + textwrap.dedent(
    """
    store = module.ExperimentStore.create(sys.argv[2], "crash", "crash", {"seed": 0})
    print("created", flush=True)

    def kill_soon():
        time.sleep(0.03)
        os.kill(os.getpid(), signal.SIGKILL)

    i = 0
    while True:
        with store.batch():  # a model's row, start, metrics and end: one commit
            store.add_model(i, {"i": i}, format="simplified", payload=bytes([i % 256]) * 64, status="frozen")
            store.set_status(i, "training")
            if i == 20 and sys.argv[3] == "inside":
                os.kill(os.getpid(), signal.SIGKILL)  # half of the batch written, none committed
            store.add_intermediate(i, i / 10)
            store.set_final(i, i)
            store.set_status(i, "trained")
        print(f"model {i}", flush=True)
        if i == 20:  # "anywhere": lands wherever the writer is 30 ms later, a commit included
            threading.Thread(target=kill_soon, daemon=True).start()
        i += 1
    """
)


@pytest.mark.parametrize("where", ["inside", "anywhere"])
def test_a_killed_batch_is_in_the_store_whole_or_not_at_all(tmp_path: Path, where: str) -> None:
    exp_dir = tmp_path / "crashed"
    child = subprocess.run([sys.executable, "-c", _BATCH_CHILD, store_module.__file__, str(exp_dir), where],
                           capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert child.returncode == -signal.SIGKILL, child.stderr
    complete = child.stdout[: child.stdout.rfind("\n") + 1]
    printed = {int(line.split()[1]) for line in complete.splitlines()[1:]}
    assert len(printed) >= 20  # the kill came mid-run
    with ExperimentStore.open(exp_dir, read_only=True) as reopened:
        models = reopened.models()
    for model in models:  # each batch whole: never a row without its metrics and end
        assert model.status == "trained" and model.metrics.intermediates == [model.model_id / 10]
        assert model.metrics.final == model.model_id
        assert [change.status for change in model.history] == ["frozen", "training", "trained"]
    stored = {model.model_id for model in models}
    assert printed <= stored and len(stored - printed) <= 1
    if where == "inside":  # killed with model 20's batch half written: exactly the 20 before it
        assert stored == set(range(20))
    with _raw(exp_dir / DB_FILENAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
