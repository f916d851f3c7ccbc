"""Per-trial overhead of the Ray training service, next to the local service, through the service API.

Each trial is trivial (it reports one final metric), so everything measured is overhead: for Ray, a
task submission, the started / final events through the collector actor, the task's result and
the driver's polling; for the local service, a fork (default, fresh mode) or a hand-over to a
reused worker (reuse mode, which is what Ray does by default), log redirection and socket round trips.

    per-trial overhead = wall * concurrency / N

i.e. how long one of the ``concurrency`` slots is busy per trial, after a warm-up batch (Ray's worker
processes exist, the local fork server has imported torch). Ray runs a local instance started by
the service (``address=None``) with as many CPUs as the concurrency; its start-up is reported apart.

Usage: python benchmarks/ray_overhead.py [--trials N]   (last line: one JSON object)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from trial_overhead_service import run_batch  # the same trivial trials, submitted the same way

from nasflow.training_service import LocalTrainingService, TrainingService
from nasflow.training_service.ray import RayTrainingService

CONCURRENCY = 2






def measure(service: TrainingService, count: int) -> tuple[float, float]:
    """Start-up seconds and per-trial overhead (ms per slot) of ``count`` trials after a warm-up."""
    start = time.perf_counter()
    service.start()
    run_batch(service, 2 * CONCURRENCY, "warmup")
    startup = time.perf_counter() - start
    wall = run_batch(service, count, "bench")
    return startup, wall * CONCURRENCY / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200, help="trials per service (default 200)")
    count = parser.parse_args().trials

    ray_service = RayTrainingService(
        trial_concurrency=CONCURRENCY,
        init_kwargs={"num_cpus": CONCURRENCY, "object_store_memory": 80 * 1024 * 1024, "log_to_driver": False},
    )
    try:
        ray_startup, ray_ms = measure(ray_service, count)
    finally:
        ray_service.shutdown()
    print(f"ray: local instance up and warm in {ray_startup:.2f} s; N={count}, concurrency {CONCURRENCY}: "
          f"{ray_ms:.2f} ms per trial per slot")

    local: dict[bool, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="nasflow-bench-") as log_dir:
        for reuse in (False, True):  # the default (a fresh process per trial), and reused workers like Ray's
            local_service = LocalTrainingService(trial_concurrency=CONCURRENCY, reuse_mode=reuse, log_dir=log_dir)
            try:
                local[reuse] = measure(local_service, count)
            finally:
                local_service.shutdown()
            print(f"local ({'reused workers' if reuse else 'fresh process per trial'}): up and warm in "
                  f"{local[reuse][0]:.2f} s; N={count}, concurrency {CONCURRENCY}: {local[reuse][1]:.2f} ms "
                  "per trial per slot")

    print(json.dumps({"ray_per_trial_ms": round(ray_ms, 2), "local_per_trial_ms": round(local[False][1], 2),
                      "local_reuse_per_trial_ms": round(local[True][1], 2), "ray_startup_s": round(ray_startup, 2),
                      "local_startup_s": round(local[False][0], 2), "trials": count, "concurrency": CONCURRENCY}))


if __name__ == "__main__":
    main()
