"""The ``local`` training service: trials run in worker processes on this machine.

Process model: ``start()`` launches a fork server (``forkserver.py``) that imports torch and nasflow
once; every worker is forked from it, so starting a trial costs a fork, not an interpreter start.
``reuse_mode=False`` gives each trial a fresh process (isolation); ``reuse_mode=True`` keeps
``trial_concurrency`` workers that run trials one after another (speed).

Events flow over one Unix socket per worker; the parent has no threads: ``poll_events`` runs a
single ``select`` over the worker sockets and the fork server's control socket, and also enforces
timeouts. Ends that the parent decides (cancel, timeout, crash) are reported once the worker
process is confirmed dead, so a freed slot is really free; a fresh worker that holds GPUs frees
them (and ends its trial) only when it has exited.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .base import TrainingService, TrialEndStatus, TrialEvent, TrialSpec
from .forkserver import ForkServer, pickled_modules
from .worker import MessageReader, send_message

__all__ = ["LocalTrainingService", "GpuPool", "trial_thread_env", "usable_cpus"]

START_GRACE_S = 120.0  # how long a submitted trial may take to start before its timeout applies anyway

_logger = logging.getLogger(__name__)


class GpuPool:
    """Which GPU runs how many trials; hands out the least loaded GPUs first."""

    def __init__(self, indices: Iterable[int], max_trials_per_gpu: int) -> None:
        self.load: dict[int, int] = {int(i): 0 for i in indices}
        self.max_trials_per_gpu = max_trials_per_gpu

    def can_take(self, gpus: Sequence[int]) -> bool:
        return all(self.load.get(g, self.max_trials_per_gpu) < self.max_trials_per_gpu for g in gpus)

    def take(self, gpus: Sequence[int]) -> tuple[int, ...]:
        for g in gpus:
            self.load[g] += 1
        return tuple(gpus)

    def allocate(self, number: int) -> tuple[int, ...] | None:
        """``number`` distinct GPUs with a free slot, or ``None`` when they are not there now."""
        free = sorted((load, g) for g, load in self.load.items() if load < self.max_trials_per_gpu)
        if len(free) < number:
            return None
        return self.take(sorted(g for _, g in free[:number]))

    def release(self, gpus: Sequence[int]) -> None:
        for g in gpus:
            self.load[g] -= 1

    def placeable(self, number: int) -> int:
        """How many more trials of ``number`` GPUs each fit right now."""
        if number <= 0:
            return sys.maxsize
        spare = sorted((self.max_trials_per_gpu - load for load in self.load.values()), reverse=True)
        count = 0
        while len(spare) >= number and spare[number - 1] > 0:
            spare[:number] = [s - 1 for s in spare[:number]]
            spare.sort(reverse=True)
            count += 1
        return count


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. under ``taskset`` or a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def trial_thread_env(threads: int, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment variables that size and pace a trial's CPU thread pools.

    ``threads`` threads for OpenMP (torch), MKL and OpenBLAS. OpenMP's idle threads sleep instead of
    spinning unless ``environ`` chooses a policy: a spinning thread keeps its core busy after every
    parallel region, taking it from the other trials (on a busy 2-core machine a small forward and
    backward pass took 130-200 ms with two spinning threads, 0.1 ms with sleeping ones). Read when
    torch loads, so set in the fork server's environment.
    """
    env = {var: str(threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    env["OMP_WAIT_POLICY"] = environ.get("OMP_WAIT_POLICY", "PASSIVE")
    return env


def visible_gpus() -> list[int]:
    """GPU indices to hand out by default: ``CUDA_VISIBLE_DEVICES`` when set, else all CUDA devices."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None and all(part.strip().isdigit() for part in env.split(",") if part.strip()):
        return [int(part) for part in env.split(",") if part.strip()]
    import torch

    return list(range(torch.cuda.device_count()))


@dataclass(eq=False)
class _Worker:
    token: int
    sock: socket.socket
    reader: MessageReader
    pid: int | None = None
    trial: _Trial | None = None
    pinned: tuple[int, ...] | None = None  # GPUs its CUDA context was created with (reuse mode)
    retiring: bool = False  # killed, told to exit, or a fresh-mode worker: never gets another trial
    reported_end: tuple[TrialEndStatus, str | None] | None = None


@dataclass(eq=False)
class _Trial:
    spec: TrialSpec
    worker: _Worker
    gpus: tuple[int, ...]
    deadline: float | None
    verdict: tuple[TrialEndStatus, str] | None = None  # decided by the parent (cancel, timeout); wins


def _describe_exit(pid: int | None, wait_status: int) -> str:
    code = os.waitstatus_to_exitcode(wait_status)
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        hint = " (killed from outside, e.g. by the out-of-memory killer?)" if -code == signal.SIGKILL else ""
        return f"The trial process {pid} was killed by signal {name}{hint}."
    return f"The trial process {pid} exited with code {code} before reporting the end of the trial."


class LocalTrainingService(TrainingService):
    """Runs trials in processes forked from a pre-imported fork server on this machine.

    - ``reuse_mode=False``: one fresh process per trial. ``True``: ``trial_concurrency`` workers run
      trials one after another; module-level state, ``os.environ`` changes and imports persist from
      one trial to the next (the price of ~1 ms hand-over instead of a fork); a worker that crashed
      or was killed is replaced.
    - ``trial_gpu_number > 0`` gives each trial that many GPUs from ``gpu_indices`` (default: the
      indices in ``CUDA_VISIBLE_DEVICES``, else all CUDA devices), at most
      ``max_trial_number_per_gpu`` trials per GPU, through ``CUDA_VISIBLE_DEVICES`` set before the
      trial runs. A process cannot change devices once CUDA is initialised, so a reused worker that
      initialised CUDA only takes trials on the same GPUs, or is swapped for a fresh worker. With 0,
      GPUs are not managed and trials see what the parent sees.
    - ``threads_per_trial`` (default: the CPUs this process may use, divided among the
      ``trial_concurrency`` trials) sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/
      ``OPENBLAS_NUM_THREADS`` and ``torch.set_num_threads`` in each worker, so concurrent trials
      do not oversubscribe the cores; idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``) unless
      the environment sets a policy (see ``trial_thread_env``).
    - Each trial's fds 1 and 2 go to ``TrialSpec.log_path`` or ``<log_dir>/<trial_id>.log``
      (``log_dir`` defaults to a new temporary directory).
    - ``preload``: modules the fork server imports once; workers start with them imported. In
      fresh mode the server also imports, before forking a trial's worker, the modules its payload
      names (``pickled_modules``), so a fresh trial starts as warm as a reused worker.

    Timeouts count from ``submit`` and are enforced while ``poll_events`` (or ``submit``) runs;
    the engine polls continuously, so a trial overruns by at most one poll interval. Everything is
    killed by ``shutdown()``, at interpreter exit, when the service is garbage collected, and (via
    the fork server noticing it lost its parent) when the parent dies in any other way.
    The service is not thread-safe: call it from one thread at a time.
    """

    def __init__(
        self,
        trial_concurrency: int = 1,
        reuse_mode: bool = False,
        trial_gpu_number: int = 0,
        gpu_indices: Sequence[int] | None = None,
        max_trial_number_per_gpu: int = 1,
        threads_per_trial: int | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        preload: Sequence[str] = ("torch", "nasflow"),
    ) -> None:
        if trial_concurrency < 1:
            raise ValueError(f"trial_concurrency must be at least 1, got {trial_concurrency}.")
        if trial_gpu_number < 0:
            raise ValueError(f"trial_gpu_number must be 0 or more, got {trial_gpu_number}.")
        if max_trial_number_per_gpu < 1:
            raise ValueError(f"max_trial_number_per_gpu must be at least 1, got {max_trial_number_per_gpu}.")
        if threads_per_trial is not None and threads_per_trial < 1:
            raise ValueError(f"threads_per_trial must be at least 1 (or None for automatic), got {threads_per_trial}.")
        self.trial_concurrency = trial_concurrency
        self.reuse_mode = reuse_mode
        self.trial_gpu_number = trial_gpu_number
        self.gpu_indices = list(gpu_indices) if gpu_indices is not None else None
        self.max_trial_number_per_gpu = max_trial_number_per_gpu
        self.threads_per_trial = threads_per_trial or max(1, usable_cpus() // trial_concurrency)
        self.log_dir = os.fspath(log_dir) if log_dir is not None else None
        self.preload = tuple(dict.fromkeys([*preload, "cloudpickle", "nasflow.runtime"]))
        self._server: ForkServer | None = None
        self._finalizer: weakref.finalize | None = None
        self._gpus: GpuPool | None = None
        self._workers: dict[int, _Worker] = {}
        self._trials: dict[str, _Trial] = {}
        self._events: list[TrialEvent] = []
        self._next_token = 0
        self._broken: str | None = None  # why the service cannot run trials any more
        self._thread_env: dict[str, str] = {}  # trial_thread_env, fixed when the fork server starts
        self._imports_sent: set[str] = set()  # modules the current fork server was asked to import

    # ----- lifecycle -------------------------------------------------------------------------

    @property
    def server_pid(self) -> int | None:
        """The fork server's pid (for monitoring; ``None`` when not started)."""
        return self._server.pid if self._server is not None else None

    def start(self) -> None:
        if self._server is not None:
            return
        if self.trial_gpu_number > 0:
            self._gpu_pool(self.trial_gpu_number)
        if self.log_dir is None:
            self.log_dir = tempfile.mkdtemp(prefix="nasflow-trials-")
        os.makedirs(self.log_dir, mode=0o700, exist_ok=True)
        self._thread_env = trial_thread_env(self.threads_per_trial, os.environ)
        server = ForkServer(self.preload, {**os.environ, **self._thread_env})  # read when torch loads: there
        server.start()
        self._server = server
        self._broken = None
        self._imports_sent = set()
        # Runs at interpreter exit (atexit) or when the service is garbage collected.
        self._finalizer = weakref.finalize(self, server.stop)
        if self.reuse_mode:
            for _ in range(self.trial_concurrency):
                self._spawn_worker()

    def shutdown(self) -> None:
        if self._server is None:
            return
        for trial in list(self._trials.values()):
            self._finish(trial, "cancelled", "The training service was shut down while the trial ran.")
        self._stop_server()

    def _stop_server(self) -> None:
        assert self._finalizer is not None
        self._finalizer()  # ForkServer.stop: the server kills and reaps every worker, then exits
        for worker in self._workers.values():
            worker.sock.close()
        self._workers.clear()
        self._server = None
        self._finalizer = None

    # ----- the TrainingService API -----------------------------------------------------------

    def capacity(self) -> int:
        free = self.trial_concurrency - len(self._trials)
        if self.trial_gpu_number > 0:
            free = min(free, self._gpu_pool(self.trial_gpu_number).placeable(self.trial_gpu_number))
        return max(0, free)

    def submit(self, trial: TrialSpec) -> None:
        if self._broken is not None:
            raise RuntimeError(self._broken)
        self.start()
        if trial.trial_id in self._trials:
            raise ValueError(f"Trial {trial.trial_id!r} is already running; trial ids must be unique.")
        if len(self._trials) >= self.trial_concurrency:
            raise RuntimeError(
                f"All {self.trial_concurrency} trial slots are busy; call capacity() before submit()."
            )
        number = trial.gpu_number or self.trial_gpu_number
        try:
            self._import_for(trial.payload)
            worker, gpus = self._place(trial.trial_id, number)
        except OSError:  # the fork server died since the last poll: replace it and try once more
            self._on_server_death()
            if self._broken is not None:
                raise RuntimeError(self._broken) from None
            self._import_for(trial.payload)
            worker, gpus = self._place(trial.trial_id, number)
        # The timeout counts from the trial's start; until then only a generous start-up guard
        # applies (the fork server may still be importing torch).
        deadline = time.monotonic() + trial.timeout + START_GRACE_S if trial.timeout is not None else None
        record = _Trial(trial, worker, gpus, deadline)
        worker.trial = record
        self._trials[trial.trial_id] = record
        assert self.log_dir is not None
        log_path = trial.log_path or os.path.join(self.log_dir, f"{trial.trial_id}.log")
        message = ("run", trial.trial_id, trial.payload, log_path, list(gpus) if number > 0 else None)
        try:
            send_message(worker.sock, message)
        except OSError as exc:  # the worker died before it got the trial: its exit ends the trial
            record.verdict = ("failed", f"Could not hand the trial to its worker process: {exc!r}")
            self._retire(worker, kill=True)

    def poll_events(self, timeout: float) -> list[TrialEvent]:
        return self._drain_events(timeout)

    def cancel(self, trial_id: str) -> None:
        trial = self._trials.get(trial_id)
        if trial is None or trial.verdict is not None or trial.worker.reported_end is not None:
            return  # unknown, already stopping, or already done (a fresh worker is just exiting)
        trial.verdict = ("cancelled", "The trial was cancelled.")
        self._retire(trial.worker, kill=True)

    # ----- placement ---------------------------------------------------------------------------

    def _import_for(self, payload: bytes) -> None:
        """Fresh mode: have the server import what the payload names before it forks the worker.
        (Reused workers import it once each, in their first trial.)"""
        if self.reuse_mode:
            return
        assert self._server is not None
        names = [name for name in pickled_modules(payload) if name not in self._imports_sent]
        if names:
            self._server.import_modules(names)
            self._imports_sent.update(names)

    def _gpu_pool(self, number: int) -> GpuPool:
        if self._gpus is None:
            indices = self.gpu_indices if self.gpu_indices is not None else visible_gpus()
            self._gpus = GpuPool(indices, self.max_trial_number_per_gpu)
        if number > len(self._gpus.load):
            raise ValueError(
                f"A trial asks for {number} GPU(s) but the local training service has {len(self._gpus.load)} "
                f"(gpu_indices={sorted(self._gpus.load)}); lower trial_gpu_number or pass gpu_indices."
            )
        return self._gpus

    def _place(self, trial_id: str, number: int) -> tuple[_Worker, tuple[int, ...]]:
        """Pick GPUs and a worker; a reused worker whose CUDA is pinned only takes its own GPUs."""
        idle = [w for w in self._workers.values() if self.reuse_mode and not w.retiring and w.trial is None]
        if number <= 0:
            fit = [w for w in idle if w.pinned is None] or idle
            return (fit[0] if fit else self._spawn_worker()), ()
        pool = self._gpu_pool(number)
        for worker in idle:
            if worker.pinned is not None and len(worker.pinned) == number and pool.can_take(worker.pinned):
                return worker, pool.take(worker.pinned)
        gpus = pool.allocate(number)
        if gpus is None:
            raise RuntimeError(
                f"No {number} free GPU(s) for trial {trial_id!r} (load per GPU: {pool.load}); "
                "call capacity() before submit()."
            )
        unpinned = [w for w in idle if w.pinned is None]
        if unpinned:
            return unpinned[0], gpus
        if idle:  # keep the pool size: swap a worker pinned to other GPUs for a fresh one
            self._retire(idle[0], kill=False)
        try:
            return self._spawn_worker(), gpus
        except BaseException:
            pool.release(gpus)
            raise

    def _spawn_worker(self) -> _Worker:
        assert self._server is not None
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        token = self._next_token
        self._next_token += 1
        try:
            self._server.fork(token, child_sock.fileno())
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        worker = _Worker(token, parent_sock, MessageReader(parent_sock), retiring=not self.reuse_mode)
        self._workers[token] = worker
        config = {
            "env": {**os.environ, **self._thread_env},
            "sys_path": list(sys.path),
            "cwd": os.getcwd(),
            "threads": self.threads_per_trial,
            "reuse": self.reuse_mode,
        }
        send_message(parent_sock, ("config", config))
        return worker

    def _retire(self, worker: _Worker, kill: bool) -> None:
        worker.retiring = True
        if kill:
            assert self._server is not None
            self._server.kill(worker.token, signal.SIGKILL)
        else:
            with contextlib.suppress(OSError):
                send_message(worker.sock, ("exit",))

    # ----- the event loop ----------------------------------------------------------------------

    def _pump(self, wait: float) -> None:
        """One ``select`` round over the server and worker sockets, then timeouts."""
        if self._server is None:
            time.sleep(max(0.0, min(wait, 0.05)))
            return
        now = time.monotonic()
        self._check_timeouts(now)
        deadlines = [t.deadline for t in self._trials.values() if t.deadline is not None and t.verdict is None]
        if deadlines:
            wait = min(wait, min(deadlines) - now)
        readers: list = [w.sock for w in self._workers.values() if not w.reader.eof]
        if not self._server.dead:
            readers.append(self._server.sock)
        try:
            ready, _, _ = select.select(readers, [], [], max(0.0, wait))
        except InterruptedError:
            ready = []
        ready_set = set(ready)
        for worker in list(self._workers.values()):
            if worker.sock in ready_set:
                self._read_worker(worker)
        if self._server.sock in ready_set:
            for message in self._server.read():
                self._on_server_message(message)
            if self._server.dead:
                self._on_server_death()
        self._check_timeouts(time.monotonic())

    def _check_timeouts(self, now: float) -> None:
        for trial in list(self._trials.values()):
            if trial.deadline is None or trial.verdict is not None or trial.worker.reported_end is not None:
                continue
            if now >= trial.deadline:
                trial.verdict = ("timeout", f"The trial ran past its timeout of {trial.spec.timeout} s and was killed.")
                self._retire(trial.worker, kill=True)

    def _read_worker(self, worker: _Worker) -> None:
        for message in worker.reader.read():
            trial = worker.trial
            if trial is None or trial.spec.trial_id != message[1]:
                continue  # a late message of a trial that already ended
            kind = message[0]
            if kind == "end":
                if message[4] is not None:
                    worker.pinned = tuple(message[4])
                worker.reported_end = (message[2], message[3])
                # A reused worker is free again. A fresh one is exiting: its slot is free too, but
                # GPUs are released when the process (and its CUDA context) is gone.
                if trial.verdict is None and (self.reuse_mode or not trial.gpus):
                    self._finish(trial, message[2], message[3])
            elif trial.verdict is None:
                if kind == "started":
                    worker.pid = message[2]["pid"]
                    if trial.spec.timeout is not None:
                        trial.deadline = time.monotonic() + trial.spec.timeout
                self._events.append(TrialEvent(trial.spec.trial_id, kind, value=message[2]))

    def _on_server_message(self, message: tuple) -> None:
        kind = message[0]
        if kind == "forked":
            worker = self._workers.get(message[1])
            if worker is not None:
                worker.pid = message[2]
        elif kind == "fork_failed":
            self._on_worker_exit(message[1], None, message[2])
        elif kind == "exited":
            self._on_worker_exit(message[1], message[3], None)

    def _on_worker_exit(self, token: int, wait_status: int | None, reason: str | None) -> None:
        worker = self._workers.pop(token, None)
        if worker is None:
            return
        self._read_worker(worker)  # everything it wrote before dying is buffered by now
        worker.sock.close()
        trial = worker.trial
        if trial is not None:
            if trial.verdict is not None:
                self._finish(trial, *trial.verdict)
            elif worker.reported_end is not None:
                self._finish(trial, *worker.reported_end)
            elif wait_status is not None and os.waitstatus_to_exitcode(wait_status) == 0:
                self._finish(trial, "succeeded", None)
            else:
                self._finish(trial, "failed", reason or _describe_exit(worker.pid, wait_status or 0))
        if self.reuse_mode and self._server is not None and not self._server.dead:
            warm = sum(1 for w in self._workers.values() if not w.retiring)
            for _ in range(self.trial_concurrency - warm):
                self._spawn_worker()

    def _on_server_death(self) -> None:
        """Fail the running trials, then start a new server, unless this one never got ready."""
        assert self._server is not None and self._server.process is not None
        self._server.dead = True
        try:
            code = self._server.process.wait(1.0)
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        except (subprocess.TimeoutExpired, ValueError):
            how = "closed its connection"
        reason = f"The fork server of the local training service {how}; its workers died with it."
        ready = self._server.ready
        if not ready:
            reason += (
                f" It died before it finished importing the preload modules {list(self.preload)}; "
                "see its error output above."
            )
        for token in list(self._workers):
            self._on_worker_exit(token, None, reason)
        self._stop_server()
        if not ready:
            self._broken = reason
            return
        _logger.warning("%s Starting a new one.", reason)
        self.start()

    def _finish(self, trial: _Trial, status: TrialEndStatus, error: str | None) -> None:
        """Emit the trial's only ``end`` event and free its slot and GPUs."""
        if self._trials.pop(trial.spec.trial_id, None) is None:
            return
        trial.worker.trial = None
        trial.worker.reported_end = None
        if trial.gpus and self._gpus is not None:
            self._gpus.release(trial.gpus)
        self._events.append(TrialEvent(trial.spec.trial_id, "end", status=status, error=error))
