"""Per-trial overhead of the local training service, measured through the service API only.

Each trial is trivial (it reports one final metric), so the ideal wall time is 0 and everything
measured is overhead: fork (fresh mode) or hand-over (reuse mode), log redirection, event
round trips, process exit and reaping.

    per-trial overhead = (wall - ideal) * concurrency / N,   ideal = 0

i.e. how long one of the ``concurrency`` slots is busy per trial. Steady-state figures are taken
after a warm-up batch (the fork server has imported torch); ``ten_trials_wall_s`` is 10 trials in
fresh mode counted from constructing the service, so it includes the fork server's start-up
(a Python start and ``import torch``). Each figure is the best of ``--repeats`` runs, since other
load on a small machine only ever adds time; the CPU time of all processes is printed as well.

Usage: python benchmarks/trial_overhead_service.py [--repeats 3]  (last line: one JSON object)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import cloudpickle

from nasflow.runtime import report_final_result
from nasflow.training_service import LocalTrainingService, TrainingService, TrialSpec

CONCURRENCY = 2


def trivial_trial() -> None:
    report_final_result(0.0)


PAYLOAD = cloudpickle.dumps(trivial_trial)


def run_batch(service: TrainingService, count: int, prefix: str, pids: set[int] | None = None) -> float:
    """Submit while capacity allows and poll until ``count`` trials ended; returns the wall time."""
    pids = set() if pids is None else pids
    start = time.perf_counter()
    submitted = ended = 0
    while ended < count:
        while submitted < count and service.capacity() > 0:
            service.submit(TrialSpec(f"{prefix}-{submitted}", PAYLOAD))
            submitted += 1
        for event in service.poll_events(5.0):
            if event.kind == "started":
                pids.add(event.value["pid"])
            if event.kind == "end":
                if event.status != "succeeded":
                    raise RuntimeError(f"trial {event.trial_id} ended {event.status}: {event.error}")
                ended += 1
    return time.perf_counter() - start


def cpu_seconds(pids: set[int]) -> float:
    """CPU time of this process plus ``pids`` and their reaped children (Linux /proc), so the
    cost can be read apart from the wall time, which other load on the machine inflates."""
    ticks = os.sysconf("SC_CLK_TCK")
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / ticks  # utime, stime, cutime, cstime
        except (OSError, ValueError):
            pass  # a fresh worker that is gone is counted in the fork server's cutime/cstime
    return total


def steady_state(reuse: bool, count: int, log_dir: str, repeats: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of ``count`` trials on a warm service, ``repeats`` times."""
    runs = []
    with LocalTrainingService(trial_concurrency=CONCURRENCY, reuse_mode=reuse, log_dir=log_dir) as service:
        pids = {service.server_pid}
        run_batch(service, 2 * CONCURRENCY, "warmup", pids)
        for repeat in range(repeats):
            cpu = cpu_seconds(pids)
            wall = run_batch(service, count, f"bench{repeat}", pids)
            runs.append((wall, cpu_seconds(pids) - cpu))
    return runs


def cold_start(count: int, log_dir: str) -> float:
    """Wall seconds from constructing a fresh-mode service to the end of its ``count``-th trial."""
    start = time.perf_counter()
    service = LocalTrainingService(trial_concurrency=CONCURRENCY, log_dir=log_dir)
    service.start()
    run_batch(service, count, "cold")
    wall = time.perf_counter() - start
    service.shutdown()
    return wall


def interpreter_with_torch() -> float:
    """Wall seconds of ``python -c 'import torch'``: what any start-up that imports torch pays."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the best one is reported")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; best of {args.repeats} runs")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="nasflow-bench-") as log_dir:
        colds, floors = [], []
        for _ in range(args.repeats):  # interleaved, so both see the same load
            colds.append(cold_start(10, log_dir))
            floors.append(interpreter_with_torch())
        floor = min(floors)
        print(f"fresh, 10 trials from service start-up: best {min(colds):.3f} s, "
              f"median {statistics.median(colds):.3f} s (floor: `python -c 'import torch'` takes {floor:.3f} s)")
        for reuse in (False, True):
            mode = "reuse" if reuse else "fresh"
            for count in (10, 200):
                runs = steady_state(reuse, count, log_dir, args.repeats)
                wall, cpu = min(runs)
                per_trial_ms = wall * CONCURRENCY / count * 1000
                median_ms = statistics.median(w for w, _ in runs) * CONCURRENCY / count * 1000
                print(f"{mode}, N={count}, concurrency {CONCURRENCY}: wall {wall:.3f} s, "
                      f"overhead {per_trial_ms:.2f} ms per trial per slot (median {median_ms:.2f}), "
                      f"CPU {cpu / count * 1000:.2f} ms per trial (all processes)")
                if count == 200:
                    figures[f"{mode}_per_trial_ms"] = round(per_trial_ms, 2)
    figures["ten_trials_wall_s"] = round(min(colds), 3)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
