"""The dashboard's read-only queries over a real store: sorting, type-aware filters, paging, exact
curves, the log tail's confinement to the experiment folder, and rows a hostile store could hold."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import LOG_LINES, MODELS

from nasflow.cli import main
from nasflow.dashboard.query import LOG_TAIL_BYTES, QueryError, StoreView, TrialQuery
from nasflow.experiment.store import StoreForeignError


@pytest.fixture(scope="module")
def view(small_store: Path) -> StoreView:
    view = StoreView(small_store)
    yield view
    view.close()


def ids(view: StoreView, **params: Any) -> list[int]:
    query = TrialQuery.from_params([(key.replace("__", "."), str(value)) for key, value in params.items()])
    return [row["id"] for row in view.trials(query)["rows"]]


def test_sorting_by_metric_duration_and_choice(view: StoreView) -> None:
    assert ids(view) == [0, 1, 2, 3, 4]
    assert ids(view, sort="metric", order="desc") == [4, 1, 0, 3, 2]  # missing metrics last; ties by id
    assert ids(view, sort="metric") == [0, 1, 4, 2, 3]
    assert ids(view, sort="duration") == [4, 1, 0, 2, 3]  # 10, 20, 50, 90 s; model 3 is still training
    assert ids(view, sort="choice:width", order="desc") == [4, 3, 2, 1, 0]
    rows = {row["id"]: row for row in view.trials(TrialQuery())["rows"]}
    assert [rows[i]["duration"] for i in (0, 1, 2, 4)] == [50.0, 20.0, 90.0, 10.0]
    assert rows[1]["metric"] == 0.9 and rows[0]["metric"] == 0.1 + 0.2 and rows[3]["metric"] is None
    assert rows[2]["error"] == "ValueError: diverged at step 2"  # a traceback's last line
    assert rows[1]["sample"] == MODELS[1][0] and rows[3]["steps"] == 1


def test_filters_are_type_aware_and_combine(view: StoreView) -> None:
    assert ids(view, status="trained,failed") == [0, 1, 2, 4]
    assert ids(view, c__mode="1") == [0, 3]  # 1 and 1.0, not the string "1" nor true
    assert ids(view, c__mode='"1"') == [1]
    assert ids(view, c__mode="true") == [2]
    assert ids(view, c__mode="null") == [4]
    assert ids(view, c__skip="[1]") == [0, 2, 4]
    assert ids(view, c__skip="[0, 1]") == [1]
    assert ids(view, c__act='"relu"', status="trained") == [0, 4]
    assert ids(view, metric_min=0.5) == [1, 4]
    assert ids(view, duration_max=30) == [1, 4]
    assert ids(view, error="DIVERGED") == [2]
    assert ids(view, ids="4,0,99") == [0, 4]


def test_pages_count_what_the_filters_keep(view: StoreView) -> None:
    page = view.trials(TrialQuery.from_params([("limit", "2"), ("offset", "2")]))
    assert page["total"] == 5 and [r["id"] for r in page["rows"]] == [2, 3]
    page = view.trials(TrialQuery.from_params([("status", "trained"), ("sort", "metric"), ("order", "desc"),
                                               ("limit", "2"), ("offset", "2")]))
    assert page["total"] == 3 and [r["id"] for r in page["rows"]] == [0]
    assert page["labels"] == ["width", "act", "skip", "mode"]


@pytest.mark.parametrize(("params", "message"), [
    ([("limit", "0")], "limit must be between 1 and 500"),
    ([("offset", "x")], "offset must be an integer"),
    ([("sort", "bogus")], "sort must be one of"),
    ([("order", "up")], "order must be 'asc' or 'desc'"),
    ([("status", "trained,finished")], "Unknown status 'finished'"),
    ([("metric_min", "nan")], "metric_min must be a number"),
    ([("c.width", "wide")], "The filter for choice 'width' must be a JSON value"),
    ([("ids", "1,a")], "ids must be comma-separated model ids"),
])
def test_bad_parameters_say_what_to_send(params: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(QueryError, match=message.replace("(", r"\(")):
        TrialQuery.from_params(params)


def test_curves_are_the_reported_numbers(view: StoreView) -> None:
    everything = json.loads(view.curves(None))
    curves = {s["id"]: s["values"] for s in everything["series"]}
    assert curves[0] == [0.1, 0.2, 0.1 + 0.2]  # bit-equal through SQLite and JSON
    assert curves[1] == [0.5, 0.9] and curves[3] == [0.7] and curves[4] == [0.2, 0.4]
    statuses = {status: sorted(ids) for status, ids in everything["statuses"].items()}
    assert statuses == {"failed": [2], "trained": [0, 1, 4], "training": [3]}
    loss = {s["id"]: s["values"] for s in json.loads(view.curves((0, 1), "loss"))["series"]}
    assert loss == {0: [None, None, None], 1: [1.0, 0.25]}
    assert json.loads(view.curves(()))["series"] == []
    assert view.metric_keys() == ["default", "loss"]


def test_summary_progress_and_export_order_match_the_library(view: StoreView, small_store: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    summary = view.summary()
    assert summary["counts"] == {"trained": 3, "failed": 1, "training": 1} and summary["total"] == 5
    assert summary["config"] == {"max_trial_number": 5, "engine": "ts"} and summary["alive"]
    assert main(["export", "dash", "--dir", str(small_store.parent), "--top-k", "3", "--format", "dict"]) == 0
    expected = json.loads(capsys.readouterr().out)  # what `nasflow export` calls the best, in its order
    assert [row["sample"] for row in view.export_rows(top_k=None)] == expected == [MODELS[i][0] for i in (1, 4, 0)]
    assert summary["best"] == {"id": 1, "metric": 0.9, "sample": MODELS[1][0]}
    assert [row["id"] for row in view.export_rows(ids=(4, 0))] == [4, 0]
    progress = view.progress()
    assert progress["ids"] == [0, 1, 4] and progress["metrics"] == [0.1 + 0.2, 0.9, 0.9]
    assert progress["times"] == sorted(progress["times"])
    choices = {c["label"]: c for c in view.choices()}
    act = {v["value"]: (v["count"], v["trained"], v["best"]) for v in choices["act"]["values"]}
    assert act == {"relu": (3, 2, 0.9), "tanh": (2, 1, 0.9)}
    assert [v["value"] for v in choices["width"]["values"]] == [4, 8, 16]
    parallel = view.parallel()
    assert parallel["rows"][0] == [0, 0.1 + 0.2, [4, "relu", "[1]", 1]]


def test_trial_detail_and_log_tail(view: StoreView) -> None:
    trial = view.trial(2)
    assert [h["status"] for h in trial["history"]] == ["frozen", "training", "failed"]
    assert trial["error"] == MODELS[2][4] and trial["intermediates"] == [0.05]
    assert not trial["code"]["available"] and "model_format='graph'" in trial["code"]["reason"]
    with pytest.raises(QueryError, match="graph"):
        view.graph_ir(2)
    tail = view.log_tail(0)
    lines = tail["text"].splitlines()
    assert tail["truncated"] and len(tail["text"]) <= LOG_TAIL_BYTES
    assert lines[-1] == f"model 0 line {LOG_LINES - 1}" and lines[0].startswith("model 0 line ")  # whole lines
    assert view.log_tail(0, 10**9)["text"].count("\n") == LOG_LINES  # capped at 1 MiB, which holds it all


def test_a_hostile_store_is_shown_not_obeyed(small_store: Path, tmp_path: Path) -> None:
    """Damaged JSON shows as missing data; logs outside the folder and payloads are never read."""
    copy = tmp_path / "copy"
    shutil.copytree(small_store, copy)
    marker = tmp_path / "unpickled"
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (copy / "trials" / "link.log").symlink_to(secret)

    class Bomb:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    with sqlite3.connect(copy / "nasflow.db") as conn:
        conn.execute("UPDATE model SET sample = 'not json', final = '{\"default\": \"x\"}' WHERE model_id = 0")
        conn.execute("UPDATE metric SET value = 'garbage' WHERE model_id = 1 AND seq = 1")
        for seq, value in enumerate(['"0.5"', "1abc", '{"default": "x"}', "[1]", "true", "-", "7e-3"], start=1):
            conn.execute("INSERT OR REPLACE INTO metric (model_id, seq, value, time) VALUES (4, ?, ?, 0)", (seq, value))
        conn.execute("UPDATE model SET format = 'graph', payload = ? WHERE model_id = 2", (pickle.dumps(Bomb()),))
        conn.execute("UPDATE model SET format = 'graph', payload = ? WHERE model_id = 3", ('{"format": "evil"}',))
        conn.execute("UPDATE model SET log_path = ? WHERE model_id = 4", (str(secret),))
        conn.execute("UPDATE model SET log_path = '../secret.txt' WHERE model_id = 3")
        conn.execute("UPDATE model SET log_path = ? WHERE model_id = 1", (str(copy / "trials" / "link.log"),))
    view = StoreView(copy)
    try:
        rows = {r["id"]: r for r in view.trials(TrialQuery.from_params([("sort", "metric")]))["rows"]}
        assert rows[0]["sample"] == {} and rows[0]["metric"] is None
        curves = {s["id"]: s["values"] for s in json.loads(view.curves((1, 4)))["series"]}
        assert curves == {1: [None, 0.9], 4: [None, None, None, None, None, None, 0.007]}
        assert view.summary()["total"] == 5 and view.choices() and view.parallel()["rows"]
        for model_id in (1, 3, 4):
            tail = view.log_tail(model_id)
            assert tail["text"] is None and "outside the experiment folder" in tail["reason"]
        from nasflow.dashboard.app import generate_code

        with pytest.raises(QueryError, match="not JSON text"):  # a pickle is not even read as the IR
            view.graph_ir(2)
        with pytest.raises(ValueError, match="Not nasflow graph IR JSON"):
            generate_code(view.graph_ir(3))
        assert not marker.exists()
    finally:
        view.close()


def test_only_nasflow_stores_open(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreForeignError, match="not a nasflow experiment store"):
        StoreView(tmp_path / "other.db")
