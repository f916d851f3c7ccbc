"""Shared by the dashboard tests: a small store written through the store's own API (with a controlled
clock), and HTTP helpers for a test server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nasflow.experiment import store as store_module
from nasflow.experiment.store import ExperimentStore

LOG_LINES = 5000  # a log longer than the 64 KiB tail the dashboard shows
# model id: (sample, status, intermediates, final, error, seconds of training)
MODELS: dict[int, tuple[dict[str, Any], str, list[Any], Any, str | None, float]] = {
    0: ({"width": 4, "act": "relu", "skip": [1], "mode": 1}, "trained", [0.1, 0.2, 0.1 + 0.2], 0.1 + 0.2, None, 50.0),
    1: ({"width": 8, "act": "tanh", "skip": [0, 1], "mode": "1"}, "trained",
        [{"default": 0.5, "loss": 1.0}, {"default": 0.9, "loss": 0.25}], {"default": 0.9, "loss": 0.25}, None, 20.0),
    2: ({"width": 8, "act": "relu", "skip": [1], "mode": True}, "failed", [0.05], None,
        "Traceback (most recent call last):\n  File \"train.py\", line 3\nValueError: diverged at step 2", 90.0),
    3: ({"width": 16, "act": "tanh", "skip": [0], "mode": 1.0}, "training", [0.7], None, None, 0.0),
    4: ({"width": 16, "act": "relu", "skip": [1], "mode": None}, "trained", [0.2, 0.4], 0.9, None, 10.0),
}


class Clock:
    """Stands in for the store's ``time`` module: every call is one second later."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def time(self) -> float:
        self.now += 1.0
        return self.now


def build_store(path: Path) -> Path:
    clock = Clock()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store_module, "time", SimpleNamespace(time=clock.time))
        store = ExperimentStore.create(path, "dash", "dashboard test", {"max_trial_number": 5, "engine": "ts"})
        for model_id, (sample, status, intermediates, final, error, seconds) in MODELS.items():
            store.add_model(model_id, sample, format="simplified", status="frozen")
            log = path / "trials" / f"t{model_id}.log"
            log.parent.mkdir(exist_ok=True)
            log.write_text("".join(f"model {model_id} line {n}\n" for n in range(LOG_LINES)))
            store.set_trial([model_id], f"t{model_id}", log)
            store.set_status(model_id, "training")
            started = clock.now
            for value in intermediates:
                store.add_intermediate(model_id, value)
            if final is not None:
                store.set_final(model_id, final)
            if status != "training":
                clock.now = started + seconds - 1.0  # the next call is the end, ``seconds`` after the start
                store.set_status(model_id, status, error)
        store.close()
    return path


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a request to a test server (errors are answers too)."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def get_json(url: str) -> Any:
    status, _, body = get(url)
    assert status == 200, body
    return json.loads(body)
