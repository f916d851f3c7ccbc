"""Read-only queries over an experiment store: the one dashboard module that knows the store's tables.

Only JSON and text columns are read (sample, metrics, status, history, error, log path, trial id,
config); a payload is read only for graph-format models, as the IR's JSON text, and nothing is ever
unpickled. Every JSON column is checked with ``json_valid`` in SQL and parsed defensively in Python,
so one damaged or hostile row shows as missing data instead of breaking a page. Sorting, filtering
and pagination run in SQLite, which keeps a page of a 10,000-trial store in milliseconds.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasflow.experiment.owner import pid_alive
from nasflow.experiment.store import (
    METRIC_DIRECTION_KEY,
    MODEL_STATUSES,
    ExperimentStore,
    StoreError,
    UnknownModelError,
)
from nasflow.experiment.summary import failure_reason

__all__ = ["QueryError", "StoreView", "TrialQuery", "TERMINAL_STATUSES", "parse_ids"]

TERMINAL_STATUSES = ("trained", "failed", "interrupted", "invalid")
MAX_PAGE = 500
MAX_IDS = 10_000  # ids in one request (SQLite binds at most 32,766 parameters)
_INT64 = (-(2**63), 2**63 - 1)
LOG_TAIL_BYTES = 64 * 1024
MAX_LOG_BYTES = 1024 * 1024
_NUMERIC_AXIS_ABOVE = 8  # a choice of more distinct numbers is plotted on a numeric axis, fewer as categories
_CHOICE_VALUES_SHOWN = 200  # distinct values listed per label (a uniform choice has one per trial)


class QueryError(ValueError):
    """A request the dashboard cannot answer as asked (bad parameter); the message says what to send."""


def _number_sql(column: str) -> str:
    """SQL for the number in a metric column: the value itself, or the ``default`` entry of a dict."""
    return (f"(CASE WHEN json_valid({column}) THEN CASE json_type({column}) "
            f"WHEN 'object' THEN CASE WHEN json_type({column}, '$.default') IN ('integer', 'real') "
            f"THEN json_extract({column}, '$.default') END "
            f"WHEN 'integer' THEN json_extract({column}, '$') WHEN 'real' THEN json_extract({column}, '$') END END)")


# One row per model with the derived columns the table sorts and filters on. Its ``?`` closes the
# duration of a model still training (the current time, or when a dead experiment last wrote): it is
# the first parameter of every query built on it.
_TRIALS = f"""
WITH t AS (
  SELECT m.model_id AS id, m.status AS status, {_number_sql('m.final')} AS metric,
         CASE WHEN json_valid(m.sample) AND json_type(m.sample) = 'object' THEN m.sample ELSE '{{}}' END AS sample,
         m.error AS error, m.trial_id AS trial_id, m.format AS format,
         (SELECT COUNT(*) FROM metric x WHERE x.model_id = m.model_id) AS steps,
         (SELECT MIN(h.time) FROM history h WHERE h.model_id = m.model_id AND h.status = 'training') AS started,
         CASE WHEN m.status IN {TERMINAL_STATUSES!r}
              THEN (SELECT MAX(h.time) FROM history h WHERE h.model_id = m.model_id) END AS ended
  FROM model m),
r AS (SELECT t.*, COALESCE(t.ended, ?) - t.started AS duration FROM t)
"""
_SORTS = {"id": "r.id", "status": "r.status", "metric": "r.metric", "duration": "r.duration", "steps": "r.steps",
          "trial": "r.trial_id", "error": "r.error"}


def _json(text: Any, default: Any = None) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return default


def _sql_value(kind: str, value: Any) -> Any:
    """A value of ``json_each`` as Python: arrays and objects come as JSON text, booleans by type."""
    if kind in ("array", "object"):
        return _json(value)
    return {"true": True, "false": False, "null": None}.get(kind, value)


def _choice_match(label: str, value: Any) -> tuple[str, list[Any]]:
    """SQL that a model's sample has ``value`` under ``label`` (type-aware: 1 is not "1" nor true)."""
    test = "EXISTS (SELECT 1 FROM json_each(r.sample) j WHERE j.key = ? AND {})"
    if isinstance(value, bool) or value is None:
        kind = "null" if value is None else "true" if value else "false"
        return test.format("j.type = ?"), [label, kind]
    if isinstance(value, str):
        return test.format("j.type = 'text' AND j.value = ?"), [label, value]
    if isinstance(value, int | float):
        if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
            value = float(value)  # beyond SQLite's integers; compared as a real, as SQLite stores it
        return test.format("j.type IN ('integer', 'real') AND j.value = ?"), [label, value]
    kind = "array" if isinstance(value, list) else "object"
    return test.format("j.type = ? AND j.value = json(?)"), [label, kind, json.dumps(value, separators=(",", ":"))]


def _number(params: dict[str, str], name: str) -> float | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise QueryError(f"{name} must be a number, got {text!r}.") from None
    if math.isnan(value):
        raise QueryError(f"{name} must be a number, got {text!r}.")
    return value


def _int(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise QueryError(f"{name} must be an integer, got {text!r}.") from None
    if not low <= value <= high:
        raise QueryError(f"{name} must be between {low} and {high}, got {value}.")
    return value


def parse_ids(text: str, name: str = "ids") -> tuple[int, ...]:
    """Comma-separated model ids, e.g. ``3,7,12`` (at most ``MAX_IDS``)."""
    try:
        ids = tuple(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError:
        raise QueryError(f"{name} must be comma-separated model ids such as 3,7,12, got {text[:100]!r}.") from None
    if len(ids) > MAX_IDS or any(not _INT64[0] <= i <= _INT64[1] for i in ids):
        raise QueryError(f"{name} must hold at most {MAX_IDS} model ids, each a 64-bit integer.")
    return ids


@dataclass(frozen=True)
class TrialQuery:
    """One page of the trials table: sort, filters, offset and size (see :meth:`from_params`)."""

    offset: int = 0
    limit: int = 50
    sort: str = "id"
    descending: bool = False
    statuses: tuple[str, ...] = ()
    metric_min: float | None = None
    metric_max: float | None = None
    duration_min: float | None = None
    duration_max: float | None = None
    error: str = ""
    ids: tuple[int, ...] | None = None
    choices: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    @classmethod
    def from_params(cls, items: Iterable[tuple[str, str]]) -> TrialQuery:
        """From URL parameters: ``offset``, ``limit``, ``sort`` (id, status, metric, duration, steps,
        trial, error or ``choice:LABEL``), ``order`` (asc, desc), ``status`` (comma list),
        ``metric_min/max``, ``duration_min/max`` (seconds), ``error`` (text the error contains),
        ``ids``, and ``c.LABEL=JSON`` (the sample's value for a choice, e.g. ``c.width=32``)."""
        params: dict[str, str] = {}
        choices: list[tuple[str, Any]] = []
        for key, value in items:
            if key.startswith("c."):
                if value.strip():
                    try:
                        choices.append((key[2:], json.loads(value)))
                    except ValueError:
                        raise QueryError(f"The filter for choice {key[2:]!r} must be a JSON value such as 32 or "
                                         f'"relu", got {value!r}.') from None
            else:
                params[key] = value
        sort = params.get("sort", "id") or "id"
        if sort not in _SORTS and not sort.startswith("choice:"):
            raise QueryError(f"sort must be one of {sorted(_SORTS)} or choice:LABEL, got {sort!r}.")
        order = params.get("order", "asc") or "asc"
        if order not in ("asc", "desc"):
            raise QueryError(f"order must be 'asc' or 'desc', got {order!r}.")
        statuses = tuple(s.strip() for s in params.get("status", "").split(",") if s.strip())
        unknown = sorted(set(statuses) - MODEL_STATUSES)
        if unknown:
            raise QueryError(f"Unknown status {unknown[0]!r}; expected some of {sorted(MODEL_STATUSES)}.")
        return cls(
            offset=_int(params, "offset", 0, 0, 2**62), limit=_int(params, "limit", 50, 1, MAX_PAGE), sort=sort,
            descending=order == "desc", statuses=statuses,
            metric_min=_number(params, "metric_min"), metric_max=_number(params, "metric_max"),
            duration_min=_number(params, "duration_min"), duration_max=_number(params, "duration_max"),
            error=params.get("error", "").strip(), choices=tuple(choices),
            ids=parse_ids(params["ids"]) if params.get("ids", "").strip() else None,
        )

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if self.statuses:
            clauses.append(f"r.status IN ({', '.join('?' * len(self.statuses))})")
            args += self.statuses
        for column, low, high in (("r.metric", self.metric_min, self.metric_max),
                                  ("r.duration", self.duration_min, self.duration_max)):
            if low is not None:
                clauses.append(f"{column} >= ?")
                args.append(low)
            if high is not None:
                clauses.append(f"{column} <= ?")
                args.append(high)
        if self.error:
            clauses.append("instr(lower(r.error), lower(?)) > 0")
            args.append(self.error)
        if self.ids is not None:
            clauses.append(f"r.id IN ({', '.join('?' * len(self.ids))})" if self.ids else "0")
            args += self.ids
        for label, value in self.choices:
            clause, more = _choice_match(label, value)
            clauses.append(clause)
            args += more
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", args

    def order_by(self) -> tuple[str, list[Any]]:
        args: list[Any] = []
        if self.sort.startswith("choice:"):
            key = "(SELECT j.value FROM json_each(r.sample) j WHERE j.key = ?)"
            args.append(self.sort[len("choice:"):])
        else:
            key = _SORTS[self.sort]
        direction = "DESC" if self.descending else "ASC"
        return f"ORDER BY ({key}) IS NULL, {key} {direction}, r.id {direction}", args * 2


class StoreView:
    """A read-only view of one experiment's store, shared by the dashboard's request threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._store = ExperimentStore.open(path, read_only=True)  # identity and version checked, clear errors
        self.path = self._store.path
        self.directory = self.path.parent.resolve()
        self._cache: dict[str, tuple[str, Any]] = {}
        with self._read() as conn:
            self.experiment_id: str = conn.execute("SELECT experiment_id FROM experiment").fetchone()[0]

    def close(self) -> None:
        self._store.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One snapshot for several queries while the experiment process writes; errors name the store."""
        try:
            with self._store.snapshot() as conn:
                yield conn
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot read experiment store {self.path}: {exc}.", self.path) from exc

    @staticmethod
    def _version(conn: sqlite3.Connection) -> str:
        row = conn.execute("SELECT (SELECT COUNT(*) FROM model), (SELECT MAX(updated) FROM model), "
                           "(SELECT status FROM experiment), (SELECT updated FROM experiment)").fetchone()
        return ":".join(map(str, row))

    def version(self) -> str:
        """Changes whenever a model or the experiment's state changes: what the browser polls."""
        with self._read() as conn:
            return self._version(conn)

    @staticmethod
    def _now(conn: sqlite3.Connection) -> float:
        """Where a model still training ends for now: the present while the experiment runs, else its
        last write (a killed experiment's models are not training on)."""
        status, pid, updated = conn.execute("SELECT status, pid, updated FROM experiment").fetchone()
        if status == "running" and pid_alive(pid):
            return time.time()
        return max(updated, conn.execute("SELECT MAX(updated) FROM model").fetchone()[0] or updated)

    def _cached(self, name: str, conn: sqlite3.Connection, compute: Any) -> Any:
        """Results that scan every model, recomputed only when the store changed."""
        version = self._version(conn)
        hit = self._cache.get(name)
        if hit is None or hit[0] != version:
            hit = self._cache[name] = (version, compute(conn))
        return hit[1]

    # -- overview -----------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Experiment identity, status, config, counts by status, elapsed time, best model, labels and
        model formats (code can be exported only from graph-format models)."""
        with self._read() as conn:
            experiment_id, name, config, status, pid, created, updated = conn.execute(
                "SELECT experiment_id, name, config, status, pid, created, updated FROM experiment").fetchone()
            counts = dict(conn.execute("SELECT status, COUNT(*) FROM model GROUP BY status").fetchall())
            formats = [f for (f,) in conn.execute("SELECT DISTINCT format FROM model ORDER BY format")]
            minimized = _minimized(conn)
            best = self._top(conn, 1, minimized)
            direction = "minimize" if minimized else "maximize"
            labels = self._cached("labels", conn, self._labels)
            version = self._version(conn)
        end = time.time() if status == "running" else updated
        return {
            "id": experiment_id, "name": name, "status": status, "pid": pid,
            "alive": status != "running" or pid_alive(pid), "created": created, "updated": updated,
            "elapsed": max(0.0, end - created), "config": _json(config, config), "counts": counts,
            "total": sum(counts.values()), "best": best[0] if best else None, "labels": labels,
            "version": version, "directory": str(self.directory), "formats": formats,
            "metric_direction": direction,
        }

    @staticmethod
    def _labels(conn: sqlite3.Connection) -> list[str]:
        """Choice labels: the first model's in its order, then any others (alphabetically)."""
        first = conn.execute("SELECT sample FROM model WHERE json_valid(sample) AND json_type(sample) = 'object' "
                             "ORDER BY model_id LIMIT 1").fetchone()
        ordered = list(_json(first[0], {})) if first else []
        rest = conn.execute("SELECT DISTINCT j.key FROM model m, json_each(m.sample) j "
                            "WHERE json_valid(m.sample) AND json_type(m.sample) = 'object' ORDER BY j.key").fetchall()
        return ordered + [key for (key,) in rest if key not in ordered]

    def progress(self) -> dict[str, Any]:
        """Every trained model's final metric by the time it finished, for best-so-far over time."""
        with self._read() as conn:
            created = conn.execute("SELECT created FROM experiment").fetchone()[0]
            rows = conn.execute(_TRIALS + "SELECT r.id, r.ended, r.metric FROM r WHERE r.status = 'trained' "
                                "AND r.metric IS NOT NULL ORDER BY r.ended, r.id", [time.time()]).fetchall()
            minimized = _minimized(conn)
        return {"created": created, "ids": [r[0] for r in rows], "times": [r[1] - created for r in rows],
                "metrics": [r[2] for r in rows], "metric_direction": "minimize" if minimized else "maximize"}

    # -- trials -------------------------------------------------------------------------------

    def trials(self, query: TrialQuery) -> dict[str, Any]:
        """One page of the table, and how many models pass the filters.

        The page's ids are chosen first (sorting only on the key) and their columns read after, so a
        deep page costs what the first one does."""
        where, where_args = query.where()
        order, order_args = query.order_by()
        with self._read() as conn:
            now = self._now(conn)
            total = conn.execute(_TRIALS + f"SELECT COUNT(*) FROM r {where}", [now, *where_args]).fetchone()[0]
            ids = [i for (i,) in conn.execute(_TRIALS + f"SELECT r.id FROM r {where} {order} LIMIT ? OFFSET ?",
                                              [now, *where_args, *order_args, query.limit, query.offset])]
            rows = conn.execute(
                _TRIALS + "SELECT r.id, r.status, r.metric, r.steps, r.duration, r.started, r.sample, r.trial_id, "
                f"r.error, r.format FROM r WHERE r.id IN ({', '.join('?' * len(ids)) or 'NULL'})", [now, *ids])
            by_id = {r[0]: r for r in rows}
            labels = self._cached("labels", conn, self._labels)
        return {"total": total, "offset": query.offset, "limit": query.limit, "labels": labels, "rows": [
            {"id": r[0], "status": r[1], "metric": r[2], "steps": r[3], "duration": r[4], "started": r[5],
             "sample": _json(r[6], {}), "trial_id": r[7], "format": r[9],
             "error": failure_reason(r[8])[:500] if r[8] else None}
            for r in map(by_id.__getitem__, ids)]}

    def choices(self) -> list[dict[str, Any]]:
        """Per choice label: each value's count, how many trained, and their mean and best metric."""
        with self._read() as conn:
            return self._cached("choices", conn, self._choices)

    def _choices(self, conn: sqlite3.Connection) -> list[dict[str, Any]]:
        rows = conn.execute(_TRIALS + f"""
            SELECT j.key, j.type, j.value, COUNT(*), SUM(r.status = 'trained' AND r.metric IS NOT NULL),
                   AVG(CASE WHEN r.status = 'trained' THEN r.metric END),
                   {"MIN" if _minimized(conn) else "MAX"}(CASE WHEN r.status = 'trained' THEN r.metric END)
            FROM r, json_each(r.sample) j GROUP BY j.key, j.type, j.value""", [0.0]).fetchall()
        by_label: dict[str, list[dict[str, Any]]] = {}
        for key, kind, value, count, trained, mean, best in rows:
            by_label.setdefault(key, []).append({"value": _sql_value(kind, value), "count": count,
                                                 "trained": trained or 0, "mean": mean, "best": best})
        out = []
        for label in self._labels(conn):
            values = by_label.get(label, [])
            numeric = len(values) > _NUMERIC_AXIS_ABOVE and all(
                isinstance(v["value"], int | float) and not isinstance(v["value"], bool) for v in values)
            values.sort(key=_value_order)
            out.append({"label": label, "numeric": numeric, "distinct": len(values),
                        "values": values[:_CHOICE_VALUES_SHOWN]})
        return out

    def parallel(self) -> dict[str, Any]:
        """Each trained model's metric and sample (values per label), for per-choice plots."""
        with self._read() as conn:
            return self._cached("parallel", conn, self._parallel)

    def _parallel(self, conn: sqlite3.Connection) -> dict[str, Any]:
        labels = self._labels(conn)
        rows = conn.execute(_TRIALS + "SELECT r.id, r.metric, r.sample FROM r WHERE r.status = 'trained' "
                            "AND r.metric IS NOT NULL ORDER BY r.id", [0.0]).fetchall()
        out = []
        for model_id, metric, sample_text in rows:
            sample = _json(sample_text, {})
            out.append([model_id, metric, [_plain(sample.get(label)) for label in labels]])
        return {"labels": labels, "rows": out}

    def curves(self, ids: tuple[int, ...] | None, key: str = "default") -> str:
        """JSON text of intermediate metrics per model, in report order (``ids`` None: every model
        that reported), and the models' ids by status; ``key`` picks an entry of dict metrics. A value
        that is not a number is null.

        SQLite writes each model's item from its stored JSON numbers: a value is passed on as text when
        it starts like a number (or, for a dict, its entry is a number), else as null, and the joined
        array must be valid JSON. Python only joins the items (no per-point work for the 100,000 points
        of a 10,000-trial experiment), and parses a model's values one by one when that check fails."""
        where, args = "", []
        if ids is not None:
            where = f"WHERE model_id IN ({', '.join('?' * len(ids)) or 'NULL'})"
            args = list(ids)
        value = ("CASE WHEN unicode(value) = 123 THEN CASE WHEN json_valid(value) AND json_type(value -> ?1) "
                 "IN ('integer', 'real') THEN value -> ?1 ELSE 'null' END "  # 123: '{'; 48-57, 45: a digit, '-'
                 "WHEN ?2 AND (unicode(value) BETWEEN 48 AND 57 OR unicode(value) = 45) THEN value ELSE 'null' END")
        numbered = [_key_path(key), key == "default", *args]
        with self._read() as conn:
            statuses = conn.execute(f"SELECT status, group_concat(model_id) FROM model {where} GROUP BY status",
                                    args).fetchall()
            joined = conn.execute(
                f"SELECT model_id, '{{\"id\":' || model_id || ',\"values\":[' || t || ']}}', "
                f"json_valid('[' || t || ']') FROM (SELECT model_id, group_concat({value}) AS t FROM metric "
                f"{where} GROUP BY model_id ORDER BY model_id)", numbered).fetchall()  # where's ? are ?3, ?4, ...
            series = [item if ok else self._parsed_curve(conn, model_id, key) for model_id, item, ok in joined]
        by_status = ",".join(f"{json.dumps(status)}:[{members}]" for status, members in statuses)
        return f'{{"key":{json.dumps(key)},"statuses":{{{by_status}}},"series":[{",".join(series)}]}}'

    @staticmethod
    def _parsed_curve(conn: sqlite3.Connection, model_id: int, key: str) -> str:
        """One model's curve item, its values parsed one by one (some are not plain numbers)."""
        values = [_metric_number(_json(v), key) for (v,) in conn.execute(
            "SELECT value FROM metric WHERE model_id = ? ORDER BY seq", (model_id,))]
        return json.dumps({"id": model_id, "values": values})

    def metric_keys(self) -> list[str]:
        """Entries of dict metrics (``default`` first), from the finals and the first intermediates."""
        with self._read() as conn:
            return self._cached("metric_keys", conn, self._metric_keys)

    @staticmethod
    def _metric_keys(conn: sqlite3.Connection) -> list[str]:
        rows = conn.execute(
            "SELECT DISTINCT j.key FROM (SELECT final AS v FROM model UNION ALL SELECT v FROM "
            "(SELECT value AS v FROM metric LIMIT 2000)) s, json_each(s.v) j "
            "WHERE substr(s.v, 1, 1) = '{' AND json_valid(s.v) AND j.type IN ('integer', 'real')").fetchall()
        return ["default", *sorted(key for (key,) in rows if key != "default")]

    # -- one trial ----------------------------------------------------------------------------

    def trial(self, model_id: int) -> dict[str, Any]:
        """Everything about one model except its payload: sample, metrics, history, error, log path."""
        with self._read() as conn:
            row = conn.execute(
                _TRIALS + "SELECT r.id, r.status, r.metric, r.duration, r.started, r.sample, "
                "r.trial_id, r.error, r.format, m.log_path, m.final, m.created, m.updated, m.payload IS NOT NULL "
                "FROM r JOIN model m ON m.model_id = r.id WHERE r.id = ?", [self._now(conn), model_id]).fetchone()
            if row is None:
                raise UnknownModelError(f"Model {model_id} is not in this experiment.", self.path)
            intermediates = [_json(v) for (v,) in conn.execute(
                "SELECT value FROM metric WHERE model_id = ? ORDER BY seq", (model_id,))]
            history = [{"status": s, "time": t, "error": e} for s, t, e in conn.execute(
                "SELECT status, time, error FROM history WHERE model_id = ? ORDER BY id", (model_id,))]
        (model_id, status, metric, duration, started, sample, trial_id, error, fmt, log_path, final, created,
         updated, has_payload) = row
        return {
            "id": model_id, "status": status, "metric": metric, "final": _json(final), "duration": duration,
            "started": started, "sample": _json(sample, {}), "trial_id": trial_id, "error": error, "format": fmt,
            "log_path": log_path, "created": created, "updated": updated, "intermediates": intermediates,
            "history": history, "code": _code_availability(fmt, bool(has_payload)),
        }

    def log_tail(self, model_id: int, max_bytes: int = LOG_TAIL_BYTES) -> dict[str, Any]:
        """The end of a model's trial log; only files inside the experiment's folder are read."""
        with self._read() as conn:
            row = conn.execute("SELECT log_path FROM model WHERE model_id = ?", (model_id,)).fetchone()
        if row is None:
            raise UnknownModelError(f"Model {model_id} is not in this experiment.", self.path)
        out: dict[str, Any] = {"path": row[0], "text": None, "size": None, "truncated": False, "reason": None}
        if not row[0]:
            out["reason"] = "No log recorded for this model (not started yet, or run in the experiment process)."
            return out
        path = Path(row[0])
        resolved = (self.directory / path if not path.is_absolute() else path).resolve()
        if not resolved.is_relative_to(self.directory):
            out["reason"] = f"The log {row[0]} lies outside the experiment folder {self.directory}; it is not shown."
            return out
        try:
            with open(resolved, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                start = max(0, size - min(max(max_bytes, 1), MAX_LOG_BYTES))
                f.seek(start)
                data = f.read()
        except OSError as exc:
            out["reason"] = f"Cannot read the log: {exc.strerror or exc}."
            return out
        if start > 0 and b"\n" in data:
            data = data[data.index(b"\n") + 1:]  # start at a whole line
        out.update(text=data.decode("utf-8", errors="replace"), size=size, truncated=start > 0)
        return out

    def graph_ir(self, model_id: int) -> str:
        """The graph IR JSON text of a graph-format model; ``QueryError`` says why there is none."""
        with self._read() as conn:
            row = conn.execute("SELECT format, payload IS NOT NULL FROM model WHERE model_id = ?",
                               (model_id,)).fetchone()
            if row is None:
                raise UnknownModelError(f"Model {model_id} is not in this experiment.", self.path)
            reason = _code_availability(row[0], bool(row[1]))["reason"]
            if reason:
                raise QueryError(reason)
            payload = conn.execute("SELECT payload FROM model WHERE model_id = ?", (model_id,)).fetchone()[0]
        data = bytes(payload) if not isinstance(payload, str) else payload.encode()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise QueryError(f"Model {model_id}'s stored graph is not JSON text; it cannot be shown as code.") from None

    # -- export -------------------------------------------------------------------------------

    def export_rows(self, ids: tuple[int, ...] | None = None, top_k: int | None = None) -> list[dict[str, Any]]:
        """Models to export: the given ids in that order, or the ``top_k`` best trained ones."""
        with self._read() as conn:
            if ids is None:
                return self._top(conn, top_k, _minimized(conn))
            marks = ", ".join("?" * len(ids)) or "NULL"
            rows = conn.execute(_TRIALS + f"SELECT r.id, r.metric, r.sample FROM r WHERE r.id IN ({marks})",
                                [0.0, *ids]).fetchall()
        found = {r[0]: {"id": r[0], "metric": r[1], "sample": _json(r[2], {})} for r in rows}
        missing = [i for i in ids if i not in found]
        if missing:
            raise UnknownModelError(f"Model {missing[0]} is not in this experiment.", self.path)
        return [found[i] for i in ids]

    @staticmethod
    def _top(conn: sqlite3.Connection, top_k: int | None, minimized: bool) -> list[dict[str, Any]]:
        """Trained models, best final metric first (ties: lower id first, as ``export_top_models``)."""
        order = "ASC" if minimized else "DESC"
        rows = conn.execute(_TRIALS + "SELECT r.id, r.metric, r.sample FROM r WHERE r.status = 'trained' "
                            f"AND r.metric IS NOT NULL ORDER BY r.metric {order}, r.id LIMIT ?",
                            [0.0, -1 if top_k is None else top_k]).fetchall()
        return [{"id": r[0], "metric": r[1], "sample": _json(r[2], {})} for r in rows]


def _minimized(conn: sqlite3.Connection) -> bool:
    """Whether lower metrics are better (the experiment recorded its evaluator's direction)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (METRIC_DIRECTION_KEY,)).fetchone()
    return row is not None and _json(row[0]) == "minimize"


def _code_availability(fmt: str, has_payload: bool) -> dict[str, Any]:
    if fmt != "graph":
        reason = (f"This model uses the {fmt!r} format; code is generated only from graph-format models. Run the "
                  "experiment with NasExperimentConfig(..., model_format='graph') to get code.")
    elif not has_payload:
        reason = "This graph-format model has no stored graph, so there is nothing to generate code from."
    else:
        reason = None
    return {"available": reason is None, "reason": reason}


def _key_path(key: str) -> str:
    """The JSON path of a dict metric's entry (quoted: a key may hold dots or spaces)."""
    if '"' in key or "\\" in key:
        raise QueryError(f"Metric key {key!r} cannot be selected: it holds a quote or a backslash.")
    return f'$."{key}"'


def _metric_number(value: Any, key: str) -> float | None:
    """The finite number under ``key`` of a metric (a plain number is its ``default``), else None."""
    if isinstance(value, dict):
        value = value.get(key)
    elif key != "default":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _value_order(entry: dict[str, Any]) -> tuple[int, float, str]:
    """Numbers by value, then everything else by its JSON text."""
    value = entry["value"]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, json.dumps(value, sort_keys=True))


def _plain(value: Any) -> Any:
    """A sample value as a number or string for plots (lists and dicts as their JSON)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, separators=(",", ":"))


