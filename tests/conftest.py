"""Test-suite root: pytest puts this folder on ``sys.path``, so test modules can ``import support``.

The suite runs on several processes (pytest-xdist, ``--dist loadgroup``), a test module to a worker,
so module-scoped fixtures (worker pools, clusters) are built once. Every test that starts Ray joins
one group, run one after another in one worker: one Ray driver per process, and no two clusters
competing for the machine's memory and cores at once."""

from __future__ import annotations

import pytest

_RAY_MODULES = {"test_ray.py", "test_ray_head_loss.py", "test_remote.py"}  # test_remote: Ray over SSH too


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    ray = []
    for item in items:
        uses_ray = item.path.name in _RAY_MODULES or "ray" in item.name.split("[")[0].split("_")
        item.add_marker(pytest.mark.xdist_group("ray" if uses_ray else item.nodeid.split("::")[0]))
        if uses_ray:
            ray.append(item)
    # The Ray group is the longest unit of work: handed out first, it runs while the other workers
    # share the rest, instead of starting last and running alone.
    in_ray = {id(item) for item in ray}
    items[:] = ray + [item for item in items if id(item) not in in_ray]
