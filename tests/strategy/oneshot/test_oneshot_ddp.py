"""Rank-consistent sampling under DDP: two CPU processes (gloo) decide the same architecture every step,
and NasExperiment records one experiment (rank 0's) however many processes train."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nasflow.experiment.store import ExperimentStore

pytestmark = pytest.mark.filterwarnings("ignore")

HERE = Path(__file__).parent
STRATEGIES = ["RandomOneShot", "ENAS", "Proxyless", "GumbelDARTS"]


def test_every_rank_trains_and_exports_the_same_architectures(tmp_path: Path) -> None:
    # The ranks seed torch differently on purpose: only the strategy's synchronization can make them agree.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(HERE / "ddp_search.py"), str(tmp_path), *STRATEGIES], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in STRATEGIES:
        first, second = (json.loads((tmp_path / f"{name}-{rank}.json").read_text()) for rank in (0, 1))
        assert len(first["steps"]) == 4 and first["steps"] == second["steps"], name
        distinct = {json.dumps(step, sort_keys=True) for step in first["steps"]}
        assert len(distinct) > 1, f"{name} decided nothing new between steps: {first['steps']}"
        assert first["export"] == second["export"] and first["logits"] == second["logits"], name
        with ExperimentStore.open(tmp_path / "experiments" / f"ddp-{name}", read_only=True) as store:
            (record,) = store.models()
            assert record.status == "trained" and record.sample == first["export"]
            assert [m["epoch"] for m in record.metrics.intermediates] == [0, 1]
    assert sorted(p.name for p in (tmp_path / "experiments").iterdir()) == sorted(f"ddp-{n}" for n in STRATEGIES)

