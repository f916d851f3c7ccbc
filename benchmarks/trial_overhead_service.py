"""Per-trial overhead of the local training service, measured through the service API only.

Each trial is trivial (it reports one final metric), so the ideal wall time is 0 and everything
measured is overhead: fork (fresh mode) or hand-over (reuse mode), log redirection, event
round trips, process exit and reaping.

    per-trial overhead = (wall - ideal) * concurrency / N,   ideal = 0

i.e. how long one of the ``concurrency`` slots is busy per trial. Steady-state figures are taken
after a warm-up batch (the fork server has imported torch); ``ten_trials_wall_s`` is 10 trials in
fresh mode counted from constructing the service, so it includes the fork server's start-up.

Usage: python benchmarks/trial_overhead_service.py  (last line: one JSON object)
"""

from __future__ import annotations

import json
import tempfile
import time

import cloudpickle

from nasflow.runtime import report_final_result
from nasflow.training_service import LocalTrainingService, TrialSpec

CONCURRENCY = 2


def trivial_trial() -> None:
    report_final_result(0.0)


PAYLOAD = cloudpickle.dumps(trivial_trial)


def run_batch(service: LocalTrainingService, count: int, prefix: str) -> float:
    """Submit while capacity allows and poll until ``count`` trials ended; returns the wall time."""
    start = time.perf_counter()
    submitted = ended = 0
    while ended < count:
        while submitted < count and service.capacity() > 0:
            service.submit(TrialSpec(f"{prefix}-{submitted}", PAYLOAD))
            submitted += 1
        for event in service.poll_events(5.0):
            if event.kind == "end":
                if event.status != "succeeded":
                    raise RuntimeError(f"trial {event.trial_id} ended {event.status}: {event.error}")
                ended += 1
    return time.perf_counter() - start


def steady_state(reuse: bool, count: int, log_dir: str) -> float:
    with LocalTrainingService(trial_concurrency=CONCURRENCY, reuse_mode=reuse, log_dir=log_dir) as service:
        run_batch(service, 2 * CONCURRENCY, "warmup")
        return run_batch(service, count, "bench")


def cold_start(count: int, log_dir: str) -> float:
    start = time.perf_counter()
    service = LocalTrainingService(trial_concurrency=CONCURRENCY, log_dir=log_dir)
    service.start()
    run_batch(service, count, "cold")
    wall = time.perf_counter() - start
    service.shutdown()
    return wall


def main() -> None:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="nasflow-bench-") as log_dir:
        ten = cold_start(10, log_dir)
        print(f"fresh, 10 trials from service start-up: {ten:.3f} s")
        for reuse in (False, True):
            mode = "reuse" if reuse else "fresh"
            for count in (10, 200):
                wall = steady_state(reuse, count, log_dir)
                per_trial_ms = wall * CONCURRENCY / count * 1000
                print(f"{mode}, N={count}, concurrency {CONCURRENCY}: wall {wall:.3f} s, "
                      f"overhead {per_trial_ms:.2f} ms per trial per slot")
                if count == 200:
                    figures[f"{mode}_per_trial_ms"] = round(per_trial_ms, 2)
    figures["ten_trials_wall_s"] = round(ten, 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
