"""The ``ray`` training service: trials run as Ray tasks on a Ray cluster, with per-trial resources.

Why Ray: it already does placement over many machines (CPUs, GPUs, custom resources), worker
reuse, cancellation and failure detection; the service only maps trials onto tasks and streams
their events back (see ``ray_trial.py`` for the cluster side).

``address=None`` starts a Ray instance on this machine and stops it at ``shutdown()``; an address
(``"host:6379"``, ``"auto"``, or ``"ray://host:10001"`` for Ray Client) joins a running cluster
and leaves it running. Ray is optional: ``pip install "nasflow[ray]"``.

Failure model: a trial whose worker or node dies ends ``failed`` with the reason and the service
goes on with the remaining nodes (tasks are never retried: a retried trial would report twice).
Losing the cluster itself (head node, or the connection to it) raises ``RayClusterError`` from
``poll_events`` / ``submit`` / ``capacity`` so the engine stops; every result reported before that
has already been handed to the engine.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .base import TrainingService, TrialEndStatus, TrialEvent, TrialSpec
from .ray_trial import LOG_KIND, EventCollector, run_ray_trial

__all__ = ["RayTrainingService", "RayClusterError", "import_ray", "RAY_INSTALL_HINT"]

_logger = logging.getLogger(__name__)

RAY_INSTALL_HINT = 'pip install "nasflow[ray]"'
HEAD_RESOURCE = "node:__internal_head__"  # every Ray head node has it; pins the collector there
_DRAIN_SECONDS = 1.0  # how long one drain call on the collector may block
_STALL_SECONDS = 45.0  # a drain call pending this long past its own wait means the cluster stopped answering
_STREAM_GRACE = 10.0  # how long a finished trial waits for events still on their way
_SHUTDOWN_WAIT = 15.0  # how long shutdown waits for cancelled trials' workers to die
_HEAD_PROBE_SECONDS = 5.0  # how long a connection to the head's GCS may take before the head counts as lost
_CLIENT_ATTEMPTS = 3  # Ray Client connections tried before giving up (see RayTrainingService._init)
_RESOURCE_LAG = 1.0  # how long Ray's free-resource figures may still count a finished trial as running


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"This needs Ray, which is not installed: {RAY_INSTALL_HINT}") from err
    return ray


class RayClusterError(RuntimeError):
    """The Ray cluster is gone or unreachable, so the service cannot go on (results so far are kept)."""


@dataclass(eq=False)
class _Trial:
    spec: TrialSpec
    ref: Any
    request: dict[str, float]
    log_path: str | None
    next_seq: int = 0
    buffer: dict[int, tuple[str, Any]] = field(default_factory=dict)
    started_at: float | None = None
    deadline: float | None = None
    where: str = "an unknown node"
    node_id: str | None = None
    verdict: tuple[TrialEndStatus, str] | None = None  # decided here (cancel, timeout): wins
    outcome: tuple[TrialEndStatus, str | None] | None = None  # from the task's result or Ray's error
    expected: int | None = None  # events the task sent, known once it returned
    settled_at: float | None = None  # when the outcome became known


class RayTrainingService(TrainingService):
    """Runs each trial as a Ray task needing ``cpus_per_trial`` CPUs, ``gpus_per_trial`` GPUs and
    ``resources`` (custom Ray resources; also per trial through ``TrialSpec.resources``, where
    ``"CPU"``/``"GPU"``/``"memory"`` override the defaults).

    ``trial_concurrency`` caps running trials; ``capacity()`` is also bounded by what the cluster has
    free. ``max_trials_per_gpu > 1`` shares GPUs (a one-GPU trial asks ``1 / max_trials_per_gpu``).
    ``reuse_workers=False`` gives each trial a fresh worker process (Ray's ``max_calls=1``).
    ``scheduling_strategy`` is Ray's ("SPREAD" spreads trials over the nodes; "DEFAULT" packs).
    Trial output (stdout/stderr) is written to ``TrialSpec.log_path`` (or ``<log_dir>/<trial_id>.log``)
    on this machine, wherever the trial ran; with neither, it stays in Ray's worker logs.
    ``init_kwargs`` go to ``ray.init``; ``runtime_env`` is the job's Ray runtime environment (e.g.
    ``{"working_dir": "."}`` to ship your code to the nodes). If this process is already connected
    to Ray, that connection is used and left open.
    """

    platform = "ray"

    def __init__(
        self,
        address: str | None = None,
        trial_concurrency: int = 1,
        cpus_per_trial: float = 1,
        gpus_per_trial: float = 0,
        resources: Mapping[str, float] | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        init_kwargs: Mapping[str, Any] | None = None,
        *,
        max_trials_per_gpu: int = 1,
        reuse_workers: bool = True,
        scheduling_strategy: str = "SPREAD",
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        import_ray()
        if trial_concurrency < 1:
            raise ValueError(f"trial_concurrency must be at least 1, got {trial_concurrency}.")
        if cpus_per_trial < 0 or gpus_per_trial < 0:
            raise ValueError(f"cpus_per_trial and gpus_per_trial must be >= 0, got {cpus_per_trial}, {gpus_per_trial}.")
        if max_trials_per_gpu < 1:
            raise ValueError(f"max_trials_per_gpu must be at least 1, got {max_trials_per_gpu}.")
        for name, amount in (resources or {}).items():
            if not isinstance(amount, (int, float)) or amount < 0:
                raise ValueError(f"resources[{name!r}] must be a number >= 0, got {amount!r}.")
        self._args = dict(
            address=address, trial_concurrency=trial_concurrency, cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial, resources=dict(resources or {}), runtime_env=runtime_env,
            init_kwargs=dict(init_kwargs or {}), max_trials_per_gpu=max_trials_per_gpu,
            reuse_workers=reuse_workers, scheduling_strategy=scheduling_strategy,
            log_dir=os.fspath(log_dir) if log_dir is not None else None,
        )
        self.address = address
        self.trial_concurrency = trial_concurrency
        self.cpus_per_trial = cpus_per_trial
        self.gpus_per_trial = gpus_per_trial
        self.resources = dict(resources or {})
        self.runtime_env = dict(runtime_env) if runtime_env is not None else None
        self.init_kwargs = dict(init_kwargs or {})
        self.max_trials_per_gpu = max_trials_per_gpu
        self.reuse_workers = reuse_workers
        self.scheduling_strategy = scheduling_strategy
        self.log_dir = self._args["log_dir"]
        self._ray: Any = None
        self._owns_connection = False
        self._collector: Any = None
        self._task: Any = None
        self._drain_ref: Any = None
        self._drain_sent = 0.0
        self._trials: dict[str, _Trial] = {}
        self._events: list[TrialEvent] = []
        self._broken: RayClusterError | None = None
        self._released: list[tuple[float, dict[str, float]]] = []  # (when, resources) of trials just ended
        self._gcs_address: str | None = None  # the head node's GCS, "host:port" (None under Ray Client)

    # A service object can sit in an experiment config, which is deep-copied and pickled into the
    # store: only the arguments travel, so a copy (or a resumed experiment) starts unconnected.
    def __getstate__(self) -> dict[str, Any]:
        return dict(self._args)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        """The settings, for the experiment's record."""
        return {"platform": self.platform, **self._args}

    def __repr__(self) -> str:
        return f"RayTrainingService(address={self.address!r}, trial_concurrency={self.trial_concurrency})"

    # ----- lifecycle -------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._collector is not None

    def start(self) -> None:
        if self._collector is not None:
            return
        ray = self._ray = import_ray()
        if ray.is_initialized():
            self._owns_connection = False
            _logger.info("Using this process's existing Ray connection (address %r not used).", self.address)
        else:
            kwargs = dict(self.init_kwargs)
            if self.address is None:
                kwargs.setdefault("include_dashboard", False)
            if self.runtime_env is not None:
                kwargs.setdefault("runtime_env", self.runtime_env)
            try:
                self._init(ray, kwargs)
            except Exception as err:
                where = ("start a local Ray instance" if self.address is None
                         else f"join the Ray cluster at {self.address!r}")
                raise RayClusterError(f"Could not {where}: {err}") from err
            self._owns_connection = True
        self._gcs_address = _gcs_address(ray)
        try:
            collector = ray.remote(EventCollector).options(
                num_cpus=0, max_concurrency=64, max_restarts=0, resources={HEAD_RESOURCE: 0.001},
                name=None,
            ).remote()
            ray.get(collector.ping.remote(), timeout=120)
            self._check_feasible(self._request(None))
        except BaseException:
            if self._owns_connection:
                ray.shutdown()
            raise
        self._collector = collector
        self._task = ray.remote(max_calls=0 if self.reuse_workers else 1)(run_ray_trial)
        self._drain_ref = None

    def shutdown(self) -> None:
        if self._collector is None:
            return
        ray = self._ray
        live = [t for t in self._trials.values() if t.outcome is None]
        for trial in self._trials.values():
            if trial.verdict is None and trial.outcome is None:
                trial.verdict = ("cancelled", "The training service was shut down while the trial ran.")
        for trial in live:  # best effort even on a lost cluster: what still runs there should stop
            self._cancel_ref(trial)
        head_alive = self._head_alive()
        if head_alive and live:
            try:  # the workers are dead once their refs resolve: nothing keeps running after this
                ray.wait([t.ref for t in live], num_returns=len(live), timeout=_SHUTDOWN_WAIT)
            except Exception:  # noqa: BLE001 - best effort while tearing down
                _logger.warning("Could not confirm that the cancelled trials stopped.", exc_info=True)
        for trial in list(self._trials.values()):
            self._finish(trial, *(trial.verdict or trial.outcome or ("cancelled", "The service was shut down.")))
        if head_alive:  # a GCS call: on a lost head it would wait for Ray's 60 s exit
            try:
                ray.kill(self._collector)
            except Exception:  # noqa: BLE001
                pass
        self._collector = None
        self._drain_ref = None
        if self._owns_connection:
            ray.shutdown()
            self._owns_connection = False

    # ----- the TrainingService API -----------------------------------------------------------

    def capacity(self) -> int:
        self._check_usable()
        slots = self.trial_concurrency - len(self._trials)
        if slots <= 0:
            return 0
        request = self._request(None)
        unstarted = sum(1 for t in self._trials.values() if t.started_at is None)
        self._check_head()
        try:
            free = dict(self._ray.available_resources())
            total = self._ray.cluster_resources()
        except Exception as err:
            raise self._lost(err) from err
        # Ray's free figures lag behind by a report period: count what our trials released just now
        # as free (at worst one trial queues in Ray for a moment), and our unstarted ones as taken.
        now = time.monotonic()
        self._released = [(t, r) for t, r in self._released if now - t < _RESOURCE_LAG]
        for _, released in self._released:
            for name, amount in released.items():
                free[name] = min(free.get(name, 0.0) + amount, total.get(name, 0.0))
        by_free = _fits(request, free) - unstarted
        by_total = _fits(request, total) - len(self._trials)
        return max(0, min(slots, by_free, by_total))

    def submit(self, trial: TrialSpec) -> None:
        self.start()
        self._check_usable()
        if trial.trial_id in self._trials:
            raise ValueError(f"Trial {trial.trial_id!r} is already running; trial ids must be unique.")
        if len(self._trials) >= self.trial_concurrency:
            raise RuntimeError(f"All {self.trial_concurrency} trial slots are busy; call capacity() before submit().")
        request = self._request(trial)
        if trial.resources or trial.gpu_number:
            self._check_feasible(request, trial.trial_id)
        log_path = trial.log_path
        if log_path is None and self.log_dir is not None:
            log_path = os.path.join(self.log_dir, f"{trial.trial_id}.log")
        if log_path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(log_path)), mode=0o700, exist_ok=True)
            os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # a trial's output may be private
        options: dict[str, Any] = {
            "num_cpus": request.get("CPU", 0), "num_gpus": request.get("GPU", 0),
            "resources": {k: v for k, v in request.items() if k not in ("CPU", "GPU", "memory")},
            "max_retries": 0, "retry_exceptions": False,
            "scheduling_strategy": self.scheduling_strategy, "name": f"nasflow-trial-{trial.trial_id}",
        }
        if "memory" in request:
            options["memory"] = request["memory"]
        try:
            ref = self._task.options(**options).remote(self._collector, trial.trial_id, trial.payload,
                                                       log_path is not None)
        except (ValueError, TypeError):
            raise
        except Exception as err:
            raise self._lost(err) from err
        self._trials[trial.trial_id] = _Trial(trial, ref, request, log_path)

    def poll_events(self, timeout: float) -> list[TrialEvent]:
        if self._collector is None:
            time.sleep(max(0.0, min(timeout, 0.05)))
            events, self._events = self._events, []
            return events
        if self._broken is not None:
            # Raised once already; now let the engine wind down: every trial still open ends here.
            for trial in list(self._trials.values()):
                if trial.outcome is None:
                    self._cancel_ref(trial)  # best effort: if the cluster is still there, stop it there
                self._finish(trial, *(trial.verdict or ("failed", str(self._broken))))
            events, self._events = self._events, []
            return events
        return self._drain_events(timeout)

    def cancel(self, trial_id: str) -> None:
        trial = self._trials.get(trial_id)
        if trial is None or trial.verdict is not None or trial.outcome is not None:
            return
        if self._broken is not None:
            trial.verdict = ("cancelled", "The trial was cancelled after the service lost the Ray cluster.")
            return
        trial.verdict = ("cancelled", "The trial was cancelled.")
        self._cancel_ref(trial)

    # ----- requests and placement --------------------------------------------------------------

    def _request(self, trial: TrialSpec | None) -> dict[str, float]:
        """The Ray resources one trial asks for (zero amounts left out)."""
        gpus = float(self.gpus_per_trial)
        if trial is not None and trial.gpu_number:
            gpus = float(trial.gpu_number)
        if gpus and self.max_trials_per_gpu > 1:
            if gpus != 1:
                raise ValueError(f"max_trials_per_gpu={self.max_trials_per_gpu} shares single GPUs; a trial "
                                 f"asking {gpus:g} GPUs cannot share them. Use one GPU per trial or "
                                 "max_trials_per_gpu=1.")
            gpus = 1.0 / self.max_trials_per_gpu
        request = {"CPU": float(self.cpus_per_trial), "GPU": gpus, **{k: float(v) for k, v in self.resources.items()}}
        if trial is not None:
            for name, amount in trial.resources.items():
                request[name] = float(amount)
        return {k: v for k, v in request.items() if v > 0}

    def _check_feasible(self, request: dict[str, float], trial_id: str | None = None) -> None:
        """Refuse a request no node could ever satisfy, instead of waiting for it forever."""
        self._check_head()
        try:
            nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        except Exception as err:
            raise self._lost(err) from err
        if any(all(n.get("Resources", {}).get(k, 0) >= v for k, v in request.items()) for n in nodes):
            return
        offered = "; ".join(f"{n.get('NodeManagerAddress')}: "
                            + ", ".join(f"{k}={v:g}" for k, v in sorted(n.get("Resources", {}).items())
                                        if not k.startswith("node:") and k not in ("object_store_memory", "memory"))
                            for n in nodes)
        who = f"Trial {trial_id!r}" if trial_id else "Each trial"
        raise ValueError(f"{who} asks Ray for {request}, but no node of the cluster has that much "
                         f"(nodes: {offered or 'none alive'}). Lower cpus_per_trial / gpus_per_trial / "
                         "resources, or add a node that has them.")

    # ----- the event loop ----------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise self._broken

    def _init(self, ray: Any, kwargs: dict[str, Any]) -> None:
        """``ray.init``: ``"local"`` for ``address=None`` (an instance of our own, never a cluster Ray
        would otherwise find and join through RAY_ADDRESS or /tmp/ray). A Ray Client address is tried
        again when the cluster's client server could not start one for us in time (it starts a
        server process per client, which a busy head can be slow to bring up); other errors raise."""
        for attempt in range(1, _CLIENT_ATTEMPTS + 1):
            try:
                ray.init(address=self.address or "local", **kwargs)
                return
            except ConnectionError as err:
                if not str(self.address).startswith("ray://") or attempt == _CLIENT_ATTEMPTS:
                    raise
                _logger.warning("Ray Client connection to %s failed (%s); trying again (%d of %d).",
                                self.address, str(err).strip().splitlines()[-1], attempt + 1, _CLIENT_ATTEMPTS)
                time.sleep(2.0 * attempt)

    def _head_alive(self) -> bool:
        """Whether the head still answers (a lost collector alone leaves a working cluster to clean up)."""
        return self._probe_head() is None

    def _check_head(self) -> None:
        """Raise ``RayClusterError`` now if the head node's GCS refuses connections.

        Ray's calls that go to the GCS (free resources, the node list) wait for a lost head to come
        back for 60 s, and then Ray ends this process, so the experiment could record nothing; a
        TCP connection to the GCS port tells a dead head at once (refused) or within seconds.
        """
        err = self._probe_head()
        if err is not None:
            raise self._lost(ConnectionError(f"the head node's GCS at {self._gcs_address} does not accept "
                                             f"connections ({err})")) from err

    def _probe_head(self) -> OSError | None:
        """Why a TCP connection to the head's GCS failed, or None if it was accepted (or no address)."""
        if self._gcs_address is None:
            return None
        host, _, port = self._gcs_address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=_HEAD_PROBE_SECONDS).close()
        except OSError as err:
            return err
        return None

    def _lost(self, err: BaseException) -> RayClusterError:
        """Mark the service unusable and say why (raised by the caller)."""
        where = self.address or "the local Ray instance"
        self._broken = RayClusterError(
            f"Lost the Ray cluster at {where}: {type(err).__name__}: {err}. Trials still running there are "
            "lost; the results reported so far were delivered. Check the head node, then rerun (or resume) "
            "the experiment.")
        return self._broken

    def _pump(self, wait: float) -> None:
        """One round: wait for an event batch or a finished task (at most ``wait`` s), then timeouts."""
        ray = self._ray
        now = time.monotonic()
        self._check_timeouts(now)
        if self._drain_ref is None:
            self._drain_ref = self._collector.drain.remote(_DRAIN_SECONDS)
            self._drain_sent = now
        for trial in self._trials.values():  # wake up for the next timeout or end of a grace period
            if trial.deadline is not None and trial.verdict is None and trial.outcome is None:
                wait = min(wait, trial.deadline - now)
            if trial.settled_at is not None:
                wait = min(wait, trial.settled_at + _STREAM_GRACE - now)
        refs = [self._drain_ref] + [t.ref for t in self._trials.values() if t.outcome is None]
        try:
            ray.wait(refs, num_returns=1, timeout=max(0.0, wait), fetch_local=False)
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        except Exception as err:
            raise self._lost(err) from err
        done = set(ready)
        if self._drain_ref in done:
            drain_ref, self._drain_ref = self._drain_ref, None
            try:
                batch = ray.get(drain_ref)
            except Exception as err:  # the collector lives on the head node: the cluster is gone
                raise self._lost(err) from err
            for trial_id, seq, kind, value in batch:
                self._on_event(trial_id, seq, kind, value)
        elif time.monotonic() - self._drain_sent > _DRAIN_SECONDS + _STALL_SECONDS:
            raise self._lost(TimeoutError(f"the head node has not answered for {_STALL_SECONDS:.0f} s"))
        for trial in list(self._trials.values()):
            if trial.outcome is None and trial.ref in done:
                self._on_task_done(trial)
        now = time.monotonic()
        for trial in list(self._trials.values()):
            if trial.outcome is not None:
                self._settle(trial, now)
        self._check_timeouts(now)

    def _check_timeouts(self, now: float) -> None:
        for trial in self._trials.values():
            if trial.deadline is not None and trial.verdict is None and trial.outcome is None and now >= trial.deadline:
                trial.verdict = ("timeout", f"The trial ran past its timeout of {trial.spec.timeout} s and was "
                                 f"stopped (it ran on {trial.where}).")
                self._cancel_ref(trial)

    def _cancel_ref(self, trial: _Trial) -> None:
        try:
            self._ray.cancel(trial.ref, force=True)
        except Exception as err:  # noqa: BLE001 - e.g. it finished meanwhile; its end comes from the ref
            _logger.debug("ray.cancel of trial %s: %r", trial.spec.trial_id, err)

    def _on_event(self, trial_id: str, seq: int, kind: str, value: Any) -> None:
        trial = self._trials.get(trial_id)
        if trial is None:
            return  # a late event of a trial that already ended
        trial.buffer[seq] = (kind, value)
        while trial.next_seq in trial.buffer:
            self._deliver(trial, *trial.buffer.pop(trial.next_seq))
            trial.next_seq += 1

    def _deliver(self, trial: _Trial, kind: str, value: Any) -> None:
        if kind == LOG_KIND:
            if trial.log_path is not None:
                with open(trial.log_path, "a", encoding="utf-8") as log:
                    log.write(value)
            return
        if kind == "started":
            trial.started_at = time.monotonic()
            if trial.spec.timeout is not None:
                trial.deadline = trial.started_at + trial.spec.timeout
            trial.node_id = value.get("node")
            trial.where = f"node {value.get('node_ip')} ({value.get('host')}, Ray node id {value.get('node')})"
        if trial.verdict is None:
            self._events.append(TrialEvent(trial.spec.trial_id, kind, value=value))  # type: ignore[arg-type]

    def _on_task_done(self, trial: _Trial) -> None:
        """The task's ref resolved: read how the trial ended (its result, or why Ray could not run it)."""
        ray = self._ray
        trial.settled_at = time.monotonic()
        try:
            result = ray.get(trial.ref)
        except ray.exceptions.TaskCancelledError:
            trial.outcome = ("cancelled", "The trial's Ray task was cancelled outside nasflow.")
            return
        except (ray.exceptions.NodeDiedError, ray.exceptions.LocalRayletDiedError,
                ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError) as err:
            trial.outcome = ("failed", self._describe_crash(trial, err))
            return
        except ray.exceptions.RaySystemError as err:
            raise self._lost(err) from err
        except ray.exceptions.RayError as err:
            trial.outcome = ("failed", f"Ray could not run the trial on {trial.where}: {type(err).__name__}: {err}")
            return
        except Exception as err:  # e.g. Ray Client losing its connection
            raise self._lost(err) from err
        trial.outcome = (result["status"], result["error"])
        trial.expected = result["events"]

    def _describe_crash(self, trial: _Trial, err: BaseException) -> str:
        ray = self._ray
        if isinstance(err, ray.exceptions.OutOfMemoryError):
            return f"Ray's memory monitor killed the trial on {trial.where} (the node ran out of memory): {err}"
        dead = isinstance(err, (ray.exceptions.NodeDiedError, ray.exceptions.LocalRayletDiedError))
        if not dead and trial.node_id is not None:
            try:
                dead = any(n.get("NodeID") == trial.node_id and not n.get("Alive") for n in ray.nodes())
            except Exception:  # noqa: BLE001 - the description is all that is at stake
                pass
        if dead:
            return (f"The Ray node the trial ran on died: {trial.where}. The trial was lost with it; other "
                    f"trials go on on the remaining nodes. Ray: {type(err).__name__}: {err}")
        return (f"The trial's worker process on {trial.where} died (killed from outside, out of memory, or "
                f"the trial exited the process). Ray: {type(err).__name__}: {err}")

    def _settle(self, trial: _Trial, now: float) -> None:
        """End a trial whose task is done, once the events it sent have all been delivered."""
        assert trial.outcome is not None and trial.settled_at is not None
        if trial.verdict is None and trial.expected is not None and trial.next_seq < trial.expected:
            if now - trial.settled_at < _STREAM_GRACE:
                return
            _logger.warning("Trial %s ended but %d of its %d events never arrived.", trial.spec.trial_id,
                            trial.expected - trial.next_seq, trial.expected)
        for seq in sorted(trial.buffer):  # after a crash: what arrived, in order, despite gaps
            self._deliver(trial, *trial.buffer.pop(seq))
        self._finish(trial, *(trial.verdict or trial.outcome))

    def _finish(self, trial: _Trial, status: TrialEndStatus, error: str | None) -> None:
        """Emit the trial's only ``end`` event and free its slot."""
        if self._trials.pop(trial.spec.trial_id, None) is None:
            return
        if trial.started_at is not None:
            self._released.append((trial.settled_at or time.monotonic(), trial.request))
        self._events.append(TrialEvent(trial.spec.trial_id, "end", status=status, error=error))


def _gcs_address(ray: Any) -> str | None:
    """The GCS address of the cluster this process is connected to, when Ray says it."""
    try:
        address = ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - Ray Client, or another Ray version: no probe then
        return None
    return address if isinstance(address, str) and ":" in address else None


def _fits(request: dict[str, float], available: Mapping[str, float]) -> int:
    """How many trials of ``request`` fit into ``available`` (summed over nodes)."""
    counts = [math.floor(available.get(k, 0.0) / v + 1e-9) for k, v in request.items() if v > 0]
    return min(counts) if counts else 1 << 30
