"""Fixtures of the dashboard tests (helpers live in ``dashboard_support``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dashboard_support import build_store


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("store") / "dash")
