"""The dashboard server: loopback by default, Host checks, headers, the stop control only where the
experiment runs, clear errors, no torch, `nasflow view`, and the assets shipped as package data."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import tomllib
from pathlib import Path

import pytest
from dashboard_support import get, get_json
from support import WidthSpace

import nasflow
from nasflow.cli import main
from nasflow.dashboard import serve, server
from nasflow.dashboard.app import STATIC_DIR, STOP_HEADER
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import ExperimentStore, NasExperiment, NasExperimentConfig
from nasflow.strategy import GridSearch

ROOT = Path(__file__).resolve().parents[2]


def test_loopback_by_default_with_host_checks_and_strict_headers(small_store: Path) -> None:
    with serve(small_store, port=0) as dashboard:
        assert dashboard.url.startswith("http://127.0.0.1:") and dashboard.host == "127.0.0.1"
        status, headers, body = get(dashboard.url)
        assert status == 200 and b'src="/static/app.js"' in body
        assert "script-src 'self'" in headers["content-security-policy"] and headers["x-content-type-options"]
        summary = get_json(dashboard.url + "api/summary")
        assert summary["read_only"] and not summary["can_stop"] and summary["total"] == 5
        for host in ("evil.example", "evil.example:80", "192.168.0.10"):  # DNS rebinding, or another address
            assert get(dashboard.url + "api/summary", {"Host": host})[0] == 400
        assert get(dashboard.url + "api/stop", {STOP_HEADER: "stop"}, method="POST")[0] == 404
        status, _, body = get(dashboard.url + "api/trials?sort=nope")
        assert status == 400 and "sort must be one of" in json.loads(body)["error"]
        assert get(dashboard.url + "api/trials/77")[0] == 404
        status, headers, body = get(dashboard.url + "api/export?format=dict&top_k=2")
        assert headers["content-disposition"] == 'attachment; filename="dash-top2.json"'
        assert [s["width"] for s in json.loads(body)] == [8, 16]
        for name in ("app.js", "charts.js", "style.css", "pages/trials.js"):
            assert get(dashboard.url + f"static/{name}")[0] == 200
    assert not dashboard.running


def test_bad_requests_are_answered_with_the_reason(small_store: Path) -> None:
    queries = {
        "api/trials/abc": 400, "api/trials/1,2": 400, f"api/trials/{2**70}": 400, "api/trials/-5": 404,
        "api/trials/3/log?bytes=x": 400, "api/curves?ids=x": 400, "api/curves?ids=1&key=%22": 400,
        "api/export?format=pdf": 400, "api/export?top_k=0": 400, "api/export?ids=1,99": 404,
        "api/export?format=code&ids=0": 400, f"api/trials?c.width={10**30}": 200, "api/trials?c.width=1e999": 200,
        "api/trials?limit=100000": 400, "api/trials?ids=" + ",".join(map(str, range(10_001))): 400,
        "api/nothing": 404, "static/../query.py": 404,
    }
    with serve(small_store, port=0) as dashboard:
        for path, expected in queries.items():
            status, headers, body = get(dashboard.url + path)
            assert status == expected, (path, status, body[:200])
            if path.startswith("api/") and status != 200:
                assert json.loads(body)["error"], path
        assert "model_format='graph'" in json.loads(get(dashboard.url + "api/export?format=code&ids=0")[2])["error"]


def test_another_host_is_served_with_a_warning(small_store: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    assert server.is_loopback("127.0.0.1") and server.is_loopback("::1") and server.is_loopback("localhost")
    assert not server.is_loopback("0.0.0.0") and not server.is_loopback("10.1.2.3")
    monkeypatch.setattr(server, "is_loopback", lambda host: False)  # as if bound to a LAN address
    with caplog.at_level(logging.WARNING, "nasflow.dashboard.server"), serve(small_store, port=0) as dashboard:
        assert get(dashboard.url + "api/version", {"Host": "my-box.lan:8080"})[0] == 200
    assert "without authentication" in caplog.text


def test_a_busy_port_and_a_bad_one_are_clear_errors(small_store: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port}.*Choose another port"):
            serve(small_store, port=port)
    with pytest.raises(ValueError, match="port must be an integer from 0 to 65535"):
        serve(small_store, port=70000)


def test_serving_and_reading_never_import_torch(small_store: Path) -> None:
    code = textwrap.dedent(f"""
        import json, sys, urllib.request
        from nasflow.dashboard import serve
        with serve({str(small_store)!r}, port=0) as dashboard:
            for path in ("", "api/summary", "api/trials?sort=metric&c.act=%22relu%22", "api/curves", "api/choices",
                         "api/parallel", "api/progress", "api/trials/2", "api/trials/0/log", "api/trials/0/code",
                         "api/export?format=dict&top_k=3"):
                with urllib.request.urlopen(dashboard.url + path) as response:
                    assert response.status == 200, path
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "cloudpickle"))))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_nasflow_view_serves_read_only_until_interrupted(small_store: Path) -> None:
    command = [sys.executable, "-m", "nasflow.cli", "view", "dash", "--dir", str(small_store.parent), "--port", "0"]
    view = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "60"})  # a narrow terminal must not split the URL
    try:
        line = view.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line + view.stderr.read()
        summary = get_json(url.group() + "api/summary")
        assert summary["id"] == "dash" and summary["read_only"] and not summary["can_stop"]
    finally:
        view.send_signal(signal.SIGINT)
        assert view.wait(timeout=60) == 0, view.stderr.read()
    with pytest.raises(SystemExit, match="No experiment 'nope'"):
        main(["view", "nope", "--dir", str(small_store.parent), "--port", "0"])


GATE = threading.Event()
STARTED = threading.Event()


def held_until_released(model: WidthSpace) -> None:
    nasflow.report_intermediate_result(0.5)
    STARTED.set()
    GATE.wait()
    nasflow.report_final_result(float(model.fc.out_features))


def test_run_with_a_port_serves_the_live_experiment_and_its_stop(tmp_path: Path) -> None:
    config = NasExperimentConfig("sequential", "simplified", experiment_working_directory=str(tmp_path),
                                 progress=False, max_trial_number=3)
    with socket.socket() as busy:  # a busy port is refused before anything is created
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        refused = NasExperiment(WidthSpace(), FunctionalEvaluator(held_until_released), GridSearch(), config, id="busy")
        with pytest.raises(OSError, match="Choose another port"):
            refused.run(port=busy.getsockname()[1])
    assert not (tmp_path / "busy").exists()

    GATE.clear()
    STARTED.clear()
    experiment = NasExperiment(WidthSpace(), FunctionalEvaluator(held_until_released), GridSearch(), config, id="live")
    experiment.run(port=0, wait_completion=False)
    try:
        url = experiment.dashboard.url
        STARTED.wait()
        summary = get_json(url + "api/summary")
        assert summary["status"] == "running" and summary["can_stop"] and not summary["read_only"]
        assert summary["counts"] == {"training": 1}
        assert get(url + "api/stop", method="POST")[0] == 403  # a form on another site cannot send the header
        assert get(url + "api/stop", {STOP_HEADER: "stop"}, method="POST")[0] == 202
        assert get_json(url + "api/summary")["stopping"]
        GATE.set()
        assert experiment.wait_completion() is False
        summary = get_json(url + "api/summary")
        assert summary["status"] == "stopped" and not summary["can_stop"]
    finally:
        GATE.set()
        experiment.stop()
        experiment.dashboard.close()
    with ExperimentStore.open(tmp_path / "live", read_only=True) as store:
        assert store.experiment().status == "stopped"

    viewed = NasExperiment.view("live", 0, non_blocking=True, experiment_working_directory=str(tmp_path))  # as NNI
    try:
        summary = get_json(viewed.dashboard.url + "api/summary")
        assert summary["read_only"] and not summary["can_stop"] and summary["status"] == "stopped"
        assert summary["counts"] == {"interrupted": 1}  # the stop cut the held model short
    finally:
        viewed.dashboard.close()


def test_every_static_file_ships_in_the_wheel() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "nasflow.dashboard"]
    files = [p.relative_to(STATIC_DIR.parent).as_posix() for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert files and all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files), files
