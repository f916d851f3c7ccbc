"""The local training service with real processes: concurrency, failures, streaming, logs, GPUs, cleanup."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from support import HANG_GUARD_S, alive, wait_for, wait_until

from nasflow.experiment.engines import WORKER_PRELOAD
from nasflow.runtime import report_final_result, report_intermediate_result
from nasflow.training_service import LocalTrainingService, TrialEvent, TrialSpec
from nasflow.training_service.local import GpuPool, trial_thread_env

# Trial functions below travel by value, as if they were defined in a user's script.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork server tests target Linux")

FAST = ("cloudpickle",)  # services whose trials do not need torch start in ~0.1 s


def payload(fn: Callable[..., Any], *args: Any) -> bytes:
    return cloudpickle.dumps(functools.partial(fn, *args))


def run_all(service: LocalTrainingService, specs: list[TrialSpec],
            limit: float = HANG_GUARD_S) -> dict[str, list[TrialEvent]]:
    """Submit while capacity allows, poll until every trial ended; events per trial id."""
    pending, events, ended = list(specs), defaultdict(list), set()
    deadline = time.monotonic() + limit
    while len(ended) < len(specs):
        assert time.monotonic() < deadline, f"trials did not end in {limit} s: {dict(events)}"
        while pending and service.capacity() > 0:
            service.submit(pending.pop(0))
        for event in service.poll_events(0.2):
            events[event.trial_id].append(event)
            if event.kind == "end":
                ended.add(event.trial_id)
    return events




def started_pids(service: LocalTrainingService, count: int, limit: float = HANG_GUARD_S) -> list[int]:
    pids: list[int] = []
    deadline = time.monotonic() + limit
    while len(pids) < count:
        assert time.monotonic() < deadline, pids
        pids += [e.value["pid"] for e in service.poll_events(0.1) if e.kind == "started"]
    return pids


def end_of(events: list[TrialEvent]) -> TrialEvent:
    ends = [e for e in events if e.kind == "end"]
    assert len(ends) == 1, events
    return ends[0]




def wait_gone(pids: list[int], limit: float = HANG_GUARD_S) -> list[int]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


# ----- trials -----------------------------------------------------------------------------------


def rendezvous_trial(folder: str, me: int, other: int) -> None:
    """Announce the start, then end only once the other trial has started too (not after a fixed sleep)."""
    start = time.time()
    open(os.path.join(folder, str(me)), "w").close()
    deadline = time.monotonic() + HANG_GUARD_S
    while not os.path.exists(os.path.join(folder, str(other))) and time.monotonic() < deadline:
        time.sleep(0.01)
    report_final_result({"default": 1.0, "start": start, "end": time.time()})


def raising_trial() -> None:
    raise ValueError("boom from the trial")


def exiting_trial(code: int) -> None:
    os._exit(code)


def sys_exit_trial(code: int) -> None:
    sys.exit(code)


def self_killing_trial() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sleeping_trial(seconds: float) -> None:
    time.sleep(seconds)


def pid_trial() -> None:
    report_final_result({"default": 0.0, "pid": os.getpid()})


def waiting_trial(path: str) -> None:
    report_intermediate_result(0.5)
    deadline = time.monotonic() + HANG_GUARD_S
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    report_final_result(1.0)


def printing_trial() -> None:
    import ctypes

    print("hello from print()")
    os.write(2, b"raw write to fd 2\n")
    ctypes.CDLL(None).printf(b"printf from C\n")  # buffered by libc, flushed by the worker
    report_final_result(0.0)


def sized_trial(blob: bytes) -> None:
    report_final_result(float(len(blob)))


def env_trial() -> None:
    import torch

    report_final_result({"default": 0.0, "omp": os.environ["OMP_NUM_THREADS"], "torch": torch.get_num_threads(),
                         "wait": os.environ["OMP_WAIT_POLICY"]})


def fresh_state_trial() -> None:
    """What a fresh worker starts with, looked at before the trial builds or trains anything."""
    import random

    import numpy
    import torch

    report_final_result({
        "default": 0.0, "pid": os.getpid(),
        "recording": getattr(torch.nn.Linear.__init__, "_nf_records_init", False),  # wrapped in the server
        "optimizers_ready": "torch._dynamo" in sys.modules,  # what the first optimizer imports
        "draws": [torch.rand(1).item(), float(numpy.random.rand()), random.random()],
    })


def cuda_pinning_trial() -> None:
    """Pretend this worker initialised CUDA (the worker asks ``sys.modules['torch']``)."""
    import types

    fake_cuda = types.SimpleNamespace(is_initialized=lambda: True)
    sys.modules["torch"] = types.SimpleNamespace(cuda=fake_cuda)  # type: ignore[assignment]
    report_final_result({"default": 0.0, "pid": os.getpid(), "cuda": os.environ["CUDA_VISIBLE_DEVICES"]})


def cuda_report_trial() -> None:
    report_final_result({"default": 0.0, "pid": os.getpid(), "cuda": os.environ["CUDA_VISIBLE_DEVICES"]})


def gpu_trial(path: str) -> None:
    report_intermediate_result({"default": 0.0, "cuda": os.environ["CUDA_VISIBLE_DEVICES"]})
    deadline = time.monotonic() + HANG_GUARD_S
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


# ----- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTrainingService]:
    """Preloading what an experiment's service preloads (torch and nasflow's trial side)."""
    logs = tmp_path_factory.mktemp("logs")
    with LocalTrainingService(trial_concurrency=2, log_dir=logs, preload=WORKER_PRELOAD) as svc:
        yield svc


@pytest.fixture(scope="module")
def reuse_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTrainingService]:
    logs = tmp_path_factory.mktemp("logs")
    with LocalTrainingService(trial_concurrency=2, reuse_mode=True, preload=FAST, log_dir=logs) as svc:
        yield svc


# ----- tests ------------------------------------------------------------------------------------


def test_two_trials_overlap_at_concurrency_two(service: LocalTrainingService, tmp_path: Path) -> None:
    events = run_all(service, [TrialSpec(f"overlap-{i}", payload(rendezvous_trial, str(tmp_path), i, 1 - i))
                               for i in range(2)])
    finals = [next(e.value for e in events[f"overlap-{i}"] if e.kind == "final") for i in range(2)]
    assert max(f["start"] for f in finals) < min(f["end"] for f in finals)
    for i in range(2):
        started = events[f"overlap-{i}"][0]
        assert started.kind == "started"
        assert set(started.value) == {"pid", "gpus", "log_path"} and started.value["gpus"] == []
        assert end_of(events[f"overlap-{i}"]).status == "succeeded"


def test_failures_end_with_status_and_reason_and_later_trials_run(service: LocalTrainingService) -> None:
    specs = [
        TrialSpec("raise", payload(raising_trial)),
        TrialSpec("exit3", payload(exiting_trial, 3)),
        TrialSpec("sigkill", payload(self_killing_trial)),
        TrialSpec("timeout", payload(sleeping_trial, 3600), timeout=0.5),
        TrialSpec("sysexit2", payload(sys_exit_trial, 2)),
        TrialSpec("exit0", payload(exiting_trial, 0)),
        TrialSpec("after", payload(pid_trial)),
    ]
    events = run_all(service, specs)
    ends = {trial_id: end_of(trial_events) for trial_id, trial_events in events.items()}
    assert ends["raise"].status == "failed" and "ValueError: boom from the trial" in ends["raise"].error
    assert "Traceback" in ends["raise"].error
    assert ends["exit3"].status == "failed" and "exited with code 3" in ends["exit3"].error
    assert ends["sigkill"].status == "failed" and "SIGKILL" in ends["sigkill"].error
    assert ends["timeout"].status == "timeout" and "0.5" in ends["timeout"].error
    assert ends["sysexit2"].status == "failed" and "sys.exit(2)" in ends["sysexit2"].error
    assert ends["exit0"].status == "succeeded"
    assert ends["after"].status == "succeeded"
    assert any(e.kind == "final" for e in events["after"])


@pytest.mark.parametrize("how", ["a file in the way", "no write permission"])
def test_a_log_that_cannot_be_written_fails_its_trial_naming_the_error_and_path(
        reuse_service: LocalTrainingService, tmp_path: Path, how: str) -> None:
    """Not "exited with code 70": the trial's end carries the OSError and the path, and the worker goes on."""
    trials = tmp_path / "trials"
    if how == "a file in the way":
        trials.write_text("not a folder")
        expected = "FileExistsError"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder")
        trials.mkdir(mode=0o500)
        expected = "PermissionError"
    log = trials / "trial-0.log"
    events = run_all(reuse_service, [TrialSpec("unwritable", payload(pid_trial), log_path=str(log)),
                                     TrialSpec("fine", payload(pid_trial))])
    end = end_of(events["unwritable"])
    assert end.status == "failed" and expected in end.error and str(log) in end.error, end.error
    assert "code 70" not in end.error
    assert end_of(events["fine"]).status == "succeeded"


def test_timeout_kills_the_process(service: LocalTrainingService) -> None:
    service.submit(TrialSpec("slow", payload(sleeping_trial, 3600), timeout=0.3))
    events = wait_for(service, lambda e: e.kind == "end")
    pid = events[0].value["pid"]
    assert end_of(events).status == "timeout"
    assert wait_gone([pid]) == []


def test_cancel_ends_the_trial_as_cancelled(service: LocalTrainingService) -> None:
    service.submit(TrialSpec("to-cancel", payload(sleeping_trial, 3600)))
    (pid,) = started_pids(service, 1)
    service.cancel("to-cancel")
    service.cancel("to-cancel")  # twice, and for unknown ids: no effect
    service.cancel("no-such-trial")
    events = wait_for(service, lambda e: e.kind == "end")
    assert end_of(events).status == "cancelled" and end_of(events).error
    assert wait_gone([pid]) == []
    assert service.capacity() == 2


def test_intermediate_metric_arrives_while_the_trial_runs(service: LocalTrainingService, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    service.submit(TrialSpec("stream", payload(waiting_trial, str(flag))))
    seen = wait_for(service, lambda e: e.kind == "intermediate")
    assert [e.value for e in seen if e.kind == "intermediate"] == [0.5]
    assert not any(e.kind in ("final", "end") for e in seen)
    flag.touch()
    rest = wait_for(service, lambda e: e.kind == "end")
    assert [e.kind for e in rest] == ["final", "end"] and rest[-1].status == "succeeded"


def test_stdout_and_fd2_go_to_the_log(service: LocalTrainingService, tmp_path: Path) -> None:
    log = tmp_path / "sub" / "trial.log"
    events = run_all(service, [TrialSpec("logged", payload(printing_trial), log_path=str(log))])
    assert events["logged"][0].value["log_path"] == str(log)
    text = log.read_text()
    assert "hello from print()" in text and "raw write to fd 2" in text and "printf from C" in text
    assert log.stat().st_mode & 0o777 == 0o600 and log.parent.stat().st_mode & 0o777 == 0o700  # private
    default = run_all(service, [TrialSpec("default-log", payload(printing_trial))])
    assert Path(default["default-log"][0].value["log_path"]) == Path(service.log_dir) / "default-log.log"
    assert "raw write to fd 2" in (Path(service.log_dir) / "default-log.log").read_text()


def test_large_payload(service: LocalTrainingService) -> None:
    events = run_all(service, [TrialSpec("large", payload(sized_trial, b"x" * 5_000_000))])
    assert [e.value for e in events["large"] if e.kind == "final"] == [5_000_000.0]


def test_cpu_threads_per_trial(service: LocalTrainingService) -> None:
    expected = max(1, len(os.sched_getaffinity(0)) // 2)
    assert service.threads_per_trial == expected
    events = run_all(service, [TrialSpec("threads", payload(env_trial))])
    final = next(e.value for e in events["threads"] if e.kind == "final")
    assert final["omp"] == str(expected) and final["torch"] == expected
    assert final["wait"] == os.environ.get("OMP_WAIT_POLICY", "PASSIVE")


def test_idle_openmp_threads_sleep_unless_the_user_chose() -> None:
    assert trial_thread_env(3, {}) == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3",
                                       "OPENBLAS_NUM_THREADS": "3", "OMP_WAIT_POLICY": "PASSIVE"}
    assert trial_thread_env(1, {"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"


def test_fresh_workers_start_warm_with_random_state_of_their_own(service: LocalTrainingService) -> None:
    """Forked from a server that did the set-up once, yet each seeded as a new process would be."""
    events = run_all(service, [TrialSpec(f"fresh-{i}", payload(fresh_state_trial)) for i in range(2)])
    first, second = (next(e.value for e in events[f"fresh-{i}"] if e.kind == "final") for i in range(2))
    assert first["pid"] != second["pid"]
    assert first["recording"] and first["optimizers_ready"]
    assert all(a != b for a, b in zip(first["draws"], second["draws"], strict=True))  # torch, numpy, random


IMPORT_LOGGING_MODULE = """
import os, sys, threading, time
from nasflow.runtime import report_final_result

with open({log!r}, "a") as log:
    print(os.getpid(), file=log)
if {start_thread!r}:
    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()

def trial():
    report_final_result({{"default": 0.0, "pid": os.getpid(), "threads": threading.active_count()}})
"""


def import_logging_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                          start_thread: bool) -> tuple[Any, Path]:
    """A user module, imported here, whose import writes the importing pid to a log (and maybe starts
    a thread); its ``trial`` travels by reference, so unpickling it imports the module."""
    import importlib

    log = tmp_path / f"{name}.imports"
    (tmp_path / f"{name}.py").write_text(IMPORT_LOGGING_MODULE.format(log=str(log), start_thread=start_thread))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, name, module)
    log.write_text("")  # forget this process's own import
    return module, log


def test_modules_a_payload_names_are_imported_once_in_the_fork_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, log = import_logging_module(tmp_path, monkeypatch, "nf_user_module_once", start_thread=False)
    with LocalTrainingService(trial_concurrency=2, preload=FAST, log_dir=tmp_path) as svc:
        events = run_all(svc, [TrialSpec(f"by-ref-{i}", cloudpickle.dumps(module.trial)) for i in range(3)])
        assert {end_of(trial_events).status for trial_events in events.values()} == {"succeeded"}
        assert log.read_text().split() == [str(svc.server_pid)]


def test_a_module_that_starts_a_thread_is_left_to_the_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads do not survive a fork: the server refuses such a module (re-executing itself without
    it, same pid, running workers kept) and the trial imports it, getting its thread."""
    module, log = import_logging_module(tmp_path, monkeypatch, "nf_user_module_thread", start_thread=True)
    flag = tmp_path / "go"
    with LocalTrainingService(trial_concurrency=2, preload=FAST, log_dir=tmp_path) as svc:
        svc.submit(TrialSpec("running", payload(waiting_trial, str(flag))))
        wait_for(svc, lambda e: e.kind == "intermediate")
        server = svc.server_pid
        events = run_all(svc, [TrialSpec("threaded", cloudpickle.dumps(module.trial))])
        final = next(e.value for e in events["threaded"] if e.kind == "final")
        assert end_of(events["threaded"]).status == "succeeded" and final["threads"] >= 2
        assert log.read_text().split() == [str(server), str(final["pid"])]
        flag.touch()
        rest = wait_for(svc, lambda e: e.kind == "end")
        assert end_of(rest).status == "succeeded" and svc.server_pid == server and alive(server)
        events = run_all(svc, [TrialSpec("threaded-again", cloudpickle.dumps(module.trial))])
        assert end_of(events["threaded-again"]).status == "succeeded"
        assert len(log.read_text().split()) == 3  # imported by each trial, never again by the server


def test_reuse_mode_runs_trials_in_the_same_workers(reuse_service: LocalTrainingService) -> None:
    events = run_all(reuse_service, [TrialSpec(f"reuse-{i}", payload(pid_trial)) for i in range(6)])
    pids = {next(e.value["pid"] for e in events[f"reuse-{i}"] if e.kind == "final") for i in range(6)}
    assert len(pids) <= 2
    # A raise keeps the worker; a crash replaces it and later trials still run.
    events = run_all(reuse_service, [TrialSpec("reuse-raise", payload(raising_trial))])
    assert end_of(events["reuse-raise"]).status == "failed" and events["reuse-raise"][0].value["pid"] in pids
    events = run_all(reuse_service, [TrialSpec("reuse-crash", payload(exiting_trial, 3))])
    crashed = events["reuse-crash"][0].value["pid"]
    assert end_of(events["reuse-crash"]).status == "failed" and "code 3" in end_of(events["reuse-crash"]).error
    events = run_all(reuse_service, [TrialSpec(f"reuse-after-{i}", payload(pid_trial)) for i in range(4)])
    after = {next(e.value["pid"] for e in events[f"reuse-after-{i}"] if e.kind == "final") for i in range(4)}
    assert crashed not in after and len(after) <= 2
    events = run_all(reuse_service, [TrialSpec("reuse-timeout", payload(sleeping_trial, 3600), timeout=0.3)])
    assert end_of(events["reuse-timeout"]).status == "timeout"
    events = run_all(reuse_service, [TrialSpec("reuse-last", payload(pid_trial))])
    assert end_of(events["reuse-last"]).status == "succeeded"


def test_gpu_assignment_with_a_simulated_device_list(tmp_path: Path) -> None:
    flag = tmp_path / "release"
    with LocalTrainingService(
        trial_concurrency=3, trial_gpu_number=2, gpu_indices=[0, 1, 2, 3], preload=FAST, log_dir=tmp_path
    ) as svc:
        assert svc.capacity() == 2  # four GPUs, two per trial: the GPUs bound it, not the three slots
        svc.submit(TrialSpec("gpu-a", payload(gpu_trial, str(flag))))
        assert svc.capacity() == 1
        svc.submit(TrialSpec("gpu-b", payload(gpu_trial, str(flag))))
        assert svc.capacity() == 0
        with pytest.raises(RuntimeError, match="capacity"):
            svc.submit(TrialSpec("gpu-c", payload(gpu_trial, str(flag))))
        seen: dict[str, dict[str, Any]] = defaultdict(dict)

        def both_report_cuda() -> bool:
            for e in svc.poll_events(0.1):
                if e.kind == "started":
                    seen[e.trial_id]["gpus"] = e.value["gpus"]
                elif e.kind == "intermediate":
                    seen[e.trial_id]["cuda"] = e.value["cuda"]
            return sum("cuda" in v for v in seen.values()) == 2

        wait_until(both_report_cuda, "both trials to report CUDA_VISIBLE_DEVICES", interval=0)
        for v in seen.values():
            assert v["cuda"] == ",".join(map(str, v["gpus"])) and len(v["gpus"]) == 2
        assert not set(seen["gpu-a"]["gpus"]) & set(seen["gpu-b"]["gpus"])
        flag.touch()
        ends: list[TrialEvent] = []

        def both_ended() -> bool:
            ends.extend(e for e in svc.poll_events(0.1) if e.kind == "end")
            return len(ends) >= 2

        wait_until(both_ended, "both trials to end", interval=0)
        assert svc.capacity() == 2


def test_reused_worker_with_cuda_keeps_its_gpus(tmp_path: Path) -> None:
    def final(events: dict[str, list[TrialEvent]], trial_id: str) -> dict[str, Any]:
        assert end_of(events[trial_id]).status == "succeeded", events[trial_id]
        return next(e.value for e in events[trial_id] if e.kind == "final")

    with LocalTrainingService(
        trial_concurrency=1, reuse_mode=True, trial_gpu_number=1, gpu_indices=[0, 1], preload=FAST, log_dir=tmp_path
    ) as svc:
        pinned = final(run_all(svc, [TrialSpec("pin", payload(cuda_pinning_trial))]), "pin")
        again = final(run_all(svc, [TrialSpec("again", payload(cuda_report_trial))]), "again")
        assert (again["pid"], again["cuda"]) == (pinned["pid"], pinned["cuda"])
        wide = final(run_all(svc, [TrialSpec("wide", payload(cuda_report_trial), gpu_number=2)]), "wide")
        assert wide["cuda"] == "0,1" and wide["pid"] != pinned["pid"]
        assert wait_gone([pinned["pid"]]) == []


def test_bad_configuration_is_refused_early() -> None:
    with pytest.raises(ValueError, match="trial_concurrency"):
        LocalTrainingService(trial_concurrency=0)
    with pytest.raises(ValueError, match="max_trial_number_per_gpu"):
        LocalTrainingService(max_trial_number_per_gpu=0)
    with pytest.raises(ValueError, match="gpu_indices"):
        LocalTrainingService(trial_gpu_number=2, gpu_indices=[0]).start()


def test_shutdown_right_after_start_does_not_wait_for_preload(tmp_path: Path) -> None:
    svc = LocalTrainingService(log_dir=tmp_path)  # preloads torch: seconds
    svc.start()
    assert svc._server is not None and svc._server.process is not None
    process = svc._server.process
    svc.shutdown()
    assert process.returncode == -signal.SIGKILL  # killed at once, not asked to finish its preload first
    assert not alive(process.pid)


def test_gpu_pool_accounting() -> None:
    pool = GpuPool([0, 1, 2], max_trials_per_gpu=2)
    assert pool.placeable(2) == 3 and pool.placeable(1) == 6 and pool.placeable(4) == 0
    first = pool.allocate(2)
    assert first == (0, 1)
    assert pool.allocate(2) == (0, 2)  # least loaded first
    assert pool.allocate(2) == (1, 2)
    assert pool.allocate(1) is None and pool.placeable(1) == 0
    pool.release(first)
    assert pool.load == {0: 1, 1: 1, 2: 2} and not pool.can_take([2]) and pool.can_take([0, 1])


def test_shutdown_leaves_no_process(tmp_path: Path) -> None:
    svc = LocalTrainingService(trial_concurrency=2, preload=FAST, log_dir=tmp_path)
    svc.start()
    for i in range(2):
        svc.submit(TrialSpec(f"long-{i}", payload(sleeping_trial, 3600)))
    pids = started_pids(svc, 2)
    server = svc.server_pid
    assert server is not None and all(alive(p) for p in [*pids, server])
    svc.shutdown()
    assert [p for p in [*pids, server] if alive(p)] == []
    ends = [e for e in svc.poll_events(0) if e.kind == "end"]
    assert sorted(e.trial_id for e in ends) == ["long-0", "long-1"] and {e.status for e in ends} == {"cancelled"}
    svc.shutdown()  # idempotent


def test_killed_fork_server_takes_its_workers_along_and_is_replaced(tmp_path: Path) -> None:
    with LocalTrainingService(trial_concurrency=2, preload=FAST, log_dir=tmp_path) as svc:
        for i in range(2):
            svc.submit(TrialSpec(f"orphan-{i}", payload(sleeping_trial, 3600)))
        pids = started_pids(svc, 2)
        old_server = svc.server_pid
        assert old_server is not None
        os.kill(old_server, signal.SIGKILL)
        assert wait_gone(pids) == []
        ends = [e for e in wait_for(svc, lambda e: e.kind == "end") if e.kind == "end"]
        assert {e.status for e in ends} == {"failed"} and len(ends) == 2
        assert "fork server" in ends[0].error and "SIGKILL" in ends[0].error
        assert svc.capacity() == 2 and svc.server_pid not in (None, old_server)
        events = run_all(svc, [TrialSpec("after-restart", payload(pid_trial))])
        assert end_of(events["after-restart"]).status == "succeeded"


def test_a_server_that_cannot_start_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\nsleep 0.5\nexit 1\n")  # the server dies before it is ready
    fake_python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake_python))
    with LocalTrainingService(preload=FAST, log_dir=tmp_path) as svc:
        svc.submit(TrialSpec("doomed", payload(pid_trial)))
        events = wait_for(svc, lambda e: e.kind == "end")
        assert end_of(events).status == "failed" and "preload" in end_of(events).error
        with pytest.raises(RuntimeError, match="fork server"):
            svc.submit(TrialSpec("again", payload(pid_trial)))


DRIVER = """
import functools, json, sys, time, cloudpickle
from nasflow.training_service import LocalTrainingService, TrialSpec

def sleeper():
    time.sleep(60)

svc = LocalTrainingService(trial_concurrency=2, preload=("cloudpickle",))
svc.start()
for i in range(2):
    svc.submit(TrialSpec(f"t{i}", cloudpickle.dumps(sleeper)))
pids = []
while len(pids) < 2:
    pids += [e.value["pid"] for e in svc.poll_events(1.0) if e.kind == "started"]
print(json.dumps({"pids": pids, "server": svc.server_pid}), flush=True)
while True:
    svc.poll_events(1.0)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_parent_interrupted_or_killed_leaves_no_worker(tmp_path: Path, sig: signal.Signals) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = driver.stdout.readline()
        assert line, driver.stderr.read()
        info = json.loads(line)
        processes = [*info["pids"], info["server"]]
        assert all(alive(p) for p in processes)
        driver.send_signal(sig)
        driver.wait(HANG_GUARD_S)
        assert wait_gone(processes) == []
    finally:
        driver.kill()
        driver.wait()


MAIN_SCRIPT = """
import functools, cloudpickle
from nasflow.runtime import report_final_result
from nasflow.training_service import LocalTrainingService, TrialSpec

def square(x):  # defined in __main__: it must travel by value
    report_final_result(x * x)

if __name__ == "__main__":
    with LocalTrainingService(trial_concurrency=1) as svc:
        svc.submit(TrialSpec("main", cloudpickle.dumps(functools.partial(square, 7))))
        results = {}
        while "end" not in results:
            for event in svc.poll_events(1.0):
                results[event.kind] = event.value if event.kind != "end" else event.status
    print("RESULT", results["final"], results["end"])
"""


def test_function_defined_in_a_script_main_runs_in_a_worker(tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(MAIN_SCRIPT))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=HANG_GUARD_S, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "RESULT 49.0 succeeded" in done.stdout
