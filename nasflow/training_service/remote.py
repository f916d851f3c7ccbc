"""The ``remote`` training service: NNI's machine list (``RemoteConfig``), served by a Ray cluster.

Why Ray instead of NNI's own trial runners: Ray already places trials on machines by their CPUs
and GPUs, streams results and notices dead machines; this module only has to get a Ray cluster
onto the machines, over SSH, and take it down again.

``start()``:
1. checks every machine before anything runs (reachable, login works, the Python at
   ``python_path`` exists and imports nasflow and Ray of the versions used here), and raises one
   ``RemoteMachineError`` that lists every failing host with its fix;
2. starts Ray (``ray start --head`` on the first machine, ``ray start --address=...`` on the
   others, GPUs from ``gpu_indices`` via ``--num-gpus`` and ``CUDA_VISIBLE_DEVICES``), unless a Ray
   cluster already answers on the head's port (or ``ray_address`` is given): then it joins that one;
3. connects this process: directly when the head is this machine, else through Ray Client over an
   SSH tunnel to the head (only SSH has to be open between here and the cluster);
4. runs trials through ``RayTrainingService``.

``shutdown()`` stops the Ray processes it started, and only those: they carry a tag in their
environment, and the stop script kills the tagged processes. (``ray stop`` would also kill any
other Ray instance of that user on the machine.)
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import ipaddress
import json
import logging
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from .base import TrainingService, TrialEvent, TrialSpec
from .remote_scripts import CHECK_SCRIPT, MARK, START_SCRIPT, STOP_SCRIPT, TAG_VAR, idle_gpus
from .ssh import SshError, SshTarget, run_script, tunnel_command

__all__ = ["RemoteConfig", "RemoteMachineConfig", "RemoteTrainingService", "RemoteMachineError", "MachineInfo",
           "idle_gpus"]

_logger = logging.getLogger(__name__)

@dataclass
class RemoteMachineConfig:
    """One machine, as in NNI. ``python_path`` is the Python interpreter to use there, or (as in NNI)
    the directory holding it, e.g. a virtualenv's ``bin``; ``None`` means ``python3`` on the login PATH.
    ``gpu_indices`` (list, ``"0,1"`` or an int) limits the GPUs used; ``None`` means all. With
    ``use_active_gpu=False`` GPUs that already run processes are left out.

    Host keys are checked against ``known_hosts_file`` (default: your ``~/.ssh/known_hosts``); a new
    host is accepted and recorded once, a changed key is refused. ``strict_host_key_checking=False``
    accepts any key (only for machines you cannot reach otherwise, e.g. re-created containers).

    ``password`` is never written anywhere: pickling (the experiment's stored setup) leaves it out,
    and a config restored from a store (``nasflow resume``) takes it from the environment variable
    ``NASFLOW_SSH_PASSWORD_<HOST>`` (the host upper-cased, other characters than letters and digits as
    ``_``) or ``NASFLOW_SSH_PASSWORD``."""

    host: str
    port: int = 22
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ssh_key_file: str | None = None
    ssh_passphrase: str | None = None
    python_path: str | None = None
    gpu_indices: list[int] | str | int | None = None
    max_trial_number_per_gpu: int = 1
    use_active_gpu: bool = False
    known_hosts_file: str | None = None
    strict_host_key_checking: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise ValueError(f"RemoteMachineConfig.host must be a host name or address, got {self.host!r}.")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ValueError(f"RemoteMachineConfig.port must be a TCP port (1-65535), got {self.port!r} "
                             f"for {self.host}.")
        if self.ssh_passphrase is not None:
            raise ValueError(f"RemoteMachineConfig.ssh_passphrase ({self.host}): nasflow runs ssh without a terminal "
                             "and cannot type a passphrase; load the key into ssh-agent (`ssh-add KEY`) and drop "
                             "ssh_passphrase, or use a key without one.")
        self.gpu_indices = _parse_gpus(self.gpu_indices, self.host)
        if isinstance(self.max_trial_number_per_gpu, bool) or not isinstance(self.max_trial_number_per_gpu, int) \
                or self.max_trial_number_per_gpu < 1:
            raise ValueError(f"RemoteMachineConfig.max_trial_number_per_gpu must be a positive integer, got "
                             f"{self.max_trial_number_per_gpu!r} for {self.host}.")

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the password: a pickled config is stored with the experiment."""
        state = dict(self.__dict__)
        if state.get("password") is not None:
            state["password"] = None
            state[_PASSWORD_LEFT_OUT] = True
        return state

    def __copy__(self) -> RemoteMachineConfig:  # a copy in memory keeps the password; only pickles drop it
        copied = object.__new__(type(self))
        copied.__dict__.update(self.__dict__)  # with a restored config's password lookup (_PASSWORD_LEFT_OUT)
        return copied

    def __deepcopy__(self, memo: dict[int, Any]) -> RemoteMachineConfig:
        copied = object.__new__(type(self))
        memo[id(self)] = copied
        copied.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return copied

    def password_variables(self) -> tuple[str, str]:
        """The environment variables a restored config reads its password from, most specific first."""
        return f"{PASSWORD_VAR}_{re.sub(r'[^A-Za-z0-9]', '_', self.host).upper()}", PASSWORD_VAR

    def login_password(self) -> str | None:
        """The password to log in with: the one given, or for a config restored without it, the environment's."""
        if self.password is not None or not getattr(self, _PASSWORD_LEFT_OUT, False):
            return self.password
        variables = self.password_variables()
        password = next((os.environ[name] for name in variables if os.environ.get(name)), None)
        if password is None:
            raise SshError(self.host, f"{self.user + '@' if self.user else ''}{self.host}:{self.port} logs in with a "
                           "password, which nasflow never stores; give it again in the environment variable "
                           f"{variables[0]} (or {variables[1]} for every machine) and run again.")
        return password

    def target(self, connect_timeout: float = 10.0) -> SshTarget:
        return SshTarget(self.host, self.port, self.user, self.ssh_key_file, self.login_password(), connect_timeout,
                         self.known_hosts_file, self.strict_host_key_checking)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["password"] is not None:
            data["password"] = "***"  # the experiment record is not the place for secrets
        return data


PASSWORD_VAR = "NASFLOW_SSH_PASSWORD"
_PASSWORD_LEFT_OUT = "_password_left_out"  # set on a config unpickled from a store: its password must be given again


def _parse_gpus(value: Any, host: str) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, int) and not isinstance(value, bool):
        parts = [value]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    try:
        gpus = [int(p) for p in parts if not isinstance(p, bool)]
    except (TypeError, ValueError):
        gpus = []
    if len(gpus) != len(parts) or any(g < 0 for g in gpus):
        raise ValueError(f"RemoteMachineConfig.gpu_indices must be GPU indices (e.g. [0, 1] or '0,1'), got {value!r} "
                         f"for {host}.")
    return gpus


@dataclass
class RemoteConfig:
    """NNI's remote training-service config: the machines, and whether trial workers are reused
    (``reuse_mode=False`` gives every trial a fresh process)."""

    platform: ClassVar[str] = "remote"
    machine_list: list[RemoteMachineConfig] = field(default_factory=list)
    reuse_mode: bool = True

    def __post_init__(self) -> None:
        machines = [RemoteMachineConfig(**m) if isinstance(m, Mapping) else m for m in self.machine_list]
        for machine in machines:
            if not isinstance(machine, RemoteMachineConfig):
                raise TypeError(f"RemoteConfig.machine_list takes RemoteMachineConfig objects, got {machine!r}.")
        self.machine_list = machines

    def to_dict(self) -> dict[str, Any]:
        return {"platform": self.platform, "reuse_mode": self.reuse_mode,
                "machine_list": [m.to_dict() for m in self.machine_list]}


class RemoteMachineError(RuntimeError):
    """Machines that cannot run trials, each with what is wrong and how to fix it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        lines = "\n".join(f"  - {host}: {message}" for host, message in errors.items())
        super().__init__(f"{len(errors)} remote machine(s) cannot run trials:\n{lines}")


@dataclass
class MachineInfo:
    """What the check found on one machine."""

    machine: RemoteMachineConfig
    python: str  # the interpreter's path there
    python_version: str
    ray_version: str
    nasflow_version: str
    gpus: list[int] | None  # GPUs to give Ray (None: let Ray detect them)
    port_open: bool  # whether something already listens on the Ray port (a running cluster)
    free_port: int | None  # a port free there a moment ago (head only)


def _is_local(host: str) -> bool:
    """Whether ``host`` is this machine (so the driver can join the cluster's local node directly)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    for address in addresses:
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(address.split("%")[0]).is_loopback:
                return True
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, 0))  # only an address of this machine can be bound
                return True
            except OSError:
                continue
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _reload_ray_auth() -> None:
    """Make Ray re-read its authentication settings from the environment (it caches them)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:  # a Ray without token authentication
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


class _Teardown:
    """What ``shutdown`` (or interpreter exit, via ``weakref.finalize``) must undo; holds no service."""

    def __init__(self, ssh_timeout: float) -> None:
        self.ssh_timeout = ssh_timeout
        self.started: list[tuple[MachineInfo, str]] = []  # (machine, tag), head first
        self.tunnel: subprocess.Popen[bytes] | None = None
        self.saved_env: dict[str, str | None] | None = None

    def use_token(self, token: str) -> None:
        """Let this process's Ray connection present the cluster's token (restored at teardown)."""
        self.saved_env = {name: os.environ.get(name) for name in _AUTH_VARS}
        os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
        os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
        _reload_ray_auth()

    def __call__(self) -> None:
        saved, self.saved_env = self.saved_env, None
        if saved is not None:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            _reload_ray_auth()
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            tunnel.terminate()
            try:
                tunnel.wait(10)
            except subprocess.TimeoutExpired:
                tunnel.kill()
                tunnel.wait()
            if tunnel.stderr is not None:
                tunnel.stderr.close()
        started, self.started = self.started, []
        for info, tag in reversed(started):  # worker nodes before the head
            script = STOP_SCRIPT.format(python=shlex.quote(info.python), tag_var=TAG_VAR, tag=tag, grace=5,
                                         temp_dir=f"/tmp/{tag}")
            host = info.machine.host
            try:
                proc = run_script(info.machine.target(), script, timeout=self.ssh_timeout)
            except SshError as err:
                _logger.error("Could not stop the Ray processes nasflow started on %s: %s. Stop them there by "
                              "hand (processes with %s=%s in their environment).", host, err, TAG_VAR, tag)
                continue
            match = re.search(r"NASFLOW_STOPPED (\d+) (\d+)", proc.stdout)
            if match is None or match.group(2) != "0":
                _logger.error("Stopping Ray on %s may have left processes behind (%s): %s", host,
                              match.group(0) if match else "no report", proc.stderr.strip()[-2000:])
            else:
                _logger.info("Stopped %s Ray processes on %s.", match.group(1), host)


class RemoteTrainingService(TrainingService):
    """Runs trials on the machines of ``config`` (a ``RemoteConfig``) through a Ray cluster.

    ``trial_concurrency``, ``cpus_per_trial``, ``gpus_per_trial`` and ``resources`` are as in
    ``RayTrainingService``; a machine's ``max_trial_number_per_gpu`` lets that many trials share a
    GPU (all machines must agree on it). ``ray_address`` joins a cluster already running on the
    machines instead of starting one; ``ray_port`` / ``client_server_port`` are the head's ports.
    ``ray_start_args`` are added to every ``ray start`` (e.g. ``["--num-cpus=4"]``). ``connect``:
    ``"auto"`` (direct when the head is this machine, else Ray Client over an SSH tunnel),
    ``"direct"`` or ``"client"``.
    """

    platform = "remote"

    def __init__(
        self,
        config: RemoteConfig,
        trial_concurrency: int = 1,
        cpus_per_trial: float = 1,
        gpus_per_trial: float = 0,
        resources: Mapping[str, float] | None = None,
        *,
        ray_address: str | None = None,
        ray_port: int = 6379,
        client_server_port: int = 10001,
        ray_start_args: Sequence[str] = (),
        connect: str = "auto",
        runtime_env: Mapping[str, Any] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        ssh_timeout: float = 120.0,
    ) -> None:
        from .ray import import_ray

        import_ray()
        if isinstance(config, (list, tuple)):
            config = RemoteConfig(machine_list=list(config))
        if not isinstance(config, RemoteConfig):
            raise TypeError(f"RemoteTrainingService needs a RemoteConfig, got {config!r}.")
        if not config.machine_list:
            raise ValueError("RemoteConfig.machine_list is empty; list at least one RemoteMachineConfig.")
        if connect not in ("auto", "direct", "client"):
            raise ValueError(f"connect must be 'auto', 'direct' or 'client', got {connect!r}.")
        shares = {m.max_trial_number_per_gpu for m in config.machine_list}
        if len(shares) > 1:
            raise ValueError(f"max_trial_number_per_gpu differs between machines ({sorted(shares)}); Ray gives every "
                             "trial the same share of a GPU, so set the same value on every RemoteMachineConfig.")
        self._args = dict(
            config=config, trial_concurrency=trial_concurrency, cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial, resources=dict(resources or {}), ray_address=ray_address,
            ray_port=ray_port, client_server_port=client_server_port, ray_start_args=list(ray_start_args),
            connect=connect, runtime_env=runtime_env, log_dir=os.fspath(log_dir) if log_dir is not None else None,
            ssh_timeout=ssh_timeout,
        )
        self.config = config
        self.trial_concurrency = trial_concurrency
        self.ray_address = ray_address
        self.ray_port = ray_port
        self.client_server_port = client_server_port
        self.ray_start_args = list(ray_start_args)
        self.connect = connect
        self.ssh_timeout = ssh_timeout
        self.machines: list[MachineInfo] = []
        self.address: str | None = None  # what the driver connected to, once started
        self._ray_service: Any = None
        self._teardown = _Teardown(ssh_timeout)
        self._token: str | None = None  # the authentication token of a cluster this service started
        self._finalizer: weakref.finalize | None = None

    def __getstate__(self) -> dict[str, Any]:
        return dict(self._args)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self._args.items() if k != "config"}, **self.config.to_dict()}

    @property
    def started_cluster(self) -> bool:
        """Whether this service started Ray on the machines (and so stops it at shutdown)."""
        return bool(self._teardown.started)

    # ----- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._ray_service is not None:
            return
        self._finalizer = weakref.finalize(self, self._teardown)
        try:
            self.machines = self.check_machines()
            address, head_ip = self._bring_up()
            if self._token is not None:
                self._teardown.use_token(self._token)
            self.address = self._connect_address(address, head_ip)
            from .ray import RayTrainingService

            share = self.config.machine_list[0].max_trial_number_per_gpu
            service = RayTrainingService(
                self.address, self.trial_concurrency, self._args["cpus_per_trial"], self._args["gpus_per_trial"],
                self._args["resources"], self._args["runtime_env"], max_trials_per_gpu=share,
                reuse_workers=self.config.reuse_mode, log_dir=self._args["log_dir"],
            )
            service.start()
            self._ray_service = service
        except BaseException:
            self._finalizer()
            raise

    def shutdown(self) -> None:
        service, self._ray_service = self._ray_service, None
        try:
            if service is not None:
                service.shutdown()
        finally:
            (self._finalizer or self._teardown)()  # idempotent: undoes only what is still there

    # ----- the TrainingService API: Ray does the work ------------------------------------------

    def _service(self) -> Any:
        if self._ray_service is None:
            raise RuntimeError("The remote training service is not started; call start() first.")
        return self._ray_service

    def submit(self, trial: TrialSpec) -> None:
        self.start()
        self._service().submit(trial)

    def poll_events(self, timeout: float) -> list[TrialEvent]:
        if self._ray_service is None:
            time.sleep(max(0.0, min(timeout, 0.05)))
            return []
        return self._ray_service.poll_events(timeout)

    def cancel(self, trial_id: str) -> None:
        if self._ray_service is not None:
            self._ray_service.cancel(trial_id)

    def capacity(self) -> int:
        return self._service().capacity() if self._ray_service is not None else 0

    # ----- machine checks ----------------------------------------------------------------------

    def check_machines(self) -> list[MachineInfo]:
        """Check every machine (in parallel); raise ``RemoteMachineError`` listing all that fail."""
        machines = self.config.machine_list
        results: dict[int, MachineInfo] = {}
        errors: dict[str, str] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(machines))) as pool:
            futures = {pool.submit(self._check, m, i == 0): i for i, m in enumerate(machines)}
            for future in concurrent.futures.as_completed(futures):
                index = futures[future]
                try:
                    results[index] = future.result()
                except (SshError, RemoteMachineError) as err:
                    key = f"machine_list[{index}] ({machines[index].host}:{machines[index].port})"
                    errors[key] = str(err) if isinstance(err, SshError) else "; ".join(err.errors.values())
        if errors:
            raise RemoteMachineError(dict(sorted(errors.items())))
        return [results[i] for i in range(len(machines))]

    def _check(self, machine: RemoteMachineConfig, is_head: bool) -> MachineInfo:
        from .ray import import_ray

        ray = import_ray()
        host = f"{machine.host}:{machine.port}"
        python = machine.python_path or "python3"
        probe = self.ray_port if is_head and self.ray_address is None else 0
        script = CHECK_SCRIPT.format(python=shlex.quote(python), port=probe)
        proc = run_script(machine.target(), script, timeout=self.ssh_timeout)
        if "NASFLOW_NO_PYTHON" in proc.stdout:
            raise RemoteMachineError({host: f"no Python interpreter at python_path={python!r} there; set "
                                            "RemoteMachineConfig.python_path to the interpreter (or its bin directory) "
                                            'of an environment with `pip install "nasflow[ray]"`.'})
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
        if line is None:
            raise RemoteMachineError({host: f"running {python} there failed (exit {proc.returncode}): "
                                            f"{(proc.stderr or proc.stdout).strip()[-1500:]}"})
        info = json.loads(line[len(MARK):])
        where = f"{info['executable']} (Python {info['python']})"
        for name in ("nasflow", "ray"):
            if f"{name}_error" in info:
                raise RemoteMachineError({host: f"{where} cannot import {name} ({info[name + '_error']}); run "
                                                f'`{info["executable"]} -m pip install "nasflow[ray]"` there, or '
                                                "point python_path at an environment that has it."})
        here_python = "{}.{}".format(*sys.version_info[:2])
        if info["python"].rsplit(".", 1)[0] != here_python or info["ray"] != ray.__version__:
            raise RemoteMachineError({host: f"{where} has Ray {info['ray']}; Ray needs the same Python minor version "
                                            f"and Ray version on every machine and here (Python {here_python}, Ray "
                                            f"{ray.__version__}). Install matching versions there."})
        import nasflow

        if info["nasflow"] != getattr(nasflow, "__version__", info["nasflow"]):
            _logger.warning("%s has nasflow %s, this machine %s; trials may fail to unpickle.", host,
                            info["nasflow"], nasflow.__version__)
        gpus = machine.gpu_indices
        if not machine.use_active_gpu and "gpu_table" in info:
            present = [int(row.split(",")[0]) for row in info["gpu_table"].splitlines() if row.split(",")[0].isdigit()]
            idle = idle_gpus(info["gpu_table"], info["busy_table"])
            wanted = gpus if gpus is not None else present
            gpus = [g for g in wanted if g in idle]
            if len(gpus) < len(wanted):
                _logger.warning("%s: GPUs %s run other processes and are left out (use_active_gpu=False).",
                                host, sorted(set(wanted) - set(gpus)))
        return MachineInfo(machine, info["executable"], info["python"], info["ray"], info["nasflow"], gpus,
                           bool(info.get("port_open")), info.get("free_port"))

    # ----- the Ray cluster ---------------------------------------------------------------------

    def _bring_up(self) -> tuple[str, str]:
        """Start (or find) the cluster; returns its GCS address and the head's node address."""
        head = self.machines[0]
        if self.ray_address is not None:
            _logger.info("Joining the Ray cluster at %s; it is left running at the end.", self.ray_address)
            return self.ray_address, self.ray_address.rsplit(":", 1)[0]
        if head.port_open:
            _logger.info("A Ray cluster already runs on %s:%d; joining it (it is left running at the end).",
                         head.machine.host, self.ray_port)
            return f"{head.machine.host}:{self.ray_port}", head.machine.host
        tag = f"nasflow-ray-{uuid.uuid4().hex[:8]}"
        # A token of our own for every node and this driver: Ray enables token authentication as
        # soon as a machine has ~/.ray/auth_token, and machines would otherwise disagree on it.
        self._token = secrets.token_hex(24)
        common = [f"--temp-dir=/tmp/{tag}", "--disable-usage-stats", *self.ray_start_args]
        head_args = ["--head", f"--port={self.ray_port}", f"--ray-client-server-port={self.client_server_port}",
                     "--include-dashboard=false", *common]
        if head.free_port and not any(a.startswith("--runtime-env-agent-port") for a in self.ray_start_args):
            # Left to Ray, this port is picked after the client server starts, which then cannot
            # reach the agent and refuses every Ray Client connection.
            head_args.append(f"--runtime-env-agent-port={head.free_port}")
        output = self._ray_start(head, tag, head_args)
        match = re.search(r"ray start --address='([^']+)'", output)
        address = match.group(1) if match else f"{head.machine.host}:{self.ray_port}"
        head_ip = address.rsplit(":", 1)[0]
        workers = self.machines[1:]
        if workers:
            with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(workers))) as pool:
                futures = [pool.submit(self._ray_start, info, tag, [f"--address={address}", *common])
                           for info in workers]
                errors = {}
                for index, future in enumerate(futures, start=1):
                    try:
                        future.result()
                    except (SshError, RemoteMachineError) as err:
                        machine = self.machines[index].machine
                        key = f"machine_list[{index}] ({machine.host}:{machine.port})"
                        errors[key] = str(err) if isinstance(err, SshError) else "; ".join(err.errors.values())
                if errors:
                    raise RemoteMachineError(errors)
        return address, head_ip

    def _ray_start(self, info: MachineInfo, tag: str, args: list[str]) -> str:
        gpu_args: list[str] = []
        cuda = ""
        if info.gpus is not None:
            gpu_args = [f"--num-gpus={len(info.gpus)}"]
            cuda = f"export CUDA_VISIBLE_DEVICES={','.join(map(str, info.gpus))}"
        assert self._token is not None
        script = START_SCRIPT.format(tag_var=TAG_VAR, tag=tag, token=shlex.quote(self._token),
                                     python=shlex.quote(info.python), cuda=cuda, args=shlex.join([*args, *gpu_args]))
        self._teardown.started.append((info, tag))  # even a failed start may have left processes
        proc = run_script(info.machine.target(), script, timeout=self.ssh_timeout)
        if proc.returncode != 0:
            raise RemoteMachineError({info.machine.host: f"`ray start` failed (exit {proc.returncode}): "
                                                         f"{(proc.stdout + proc.stderr).strip()[-2000:]}"})
        return proc.stdout

    def _connect_address(self, address: str, head_ip: str) -> str:
        """The address this process gives ``ray.init``: the GCS directly, or Ray Client via a tunnel."""
        head = self.machines[0].machine
        mode = self.connect
        if mode == "auto":
            mode = "direct" if _is_local(head.host) else "client"
        if mode == "direct":
            return address
        local_port = _free_port()
        argv, env = tunnel_command(head.target(), local_port, head_ip, self.client_server_port)
        tunnel = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, start_new_session=True)
        self._teardown.tunnel = tunnel
        deadline = time.monotonic() + self.ssh_timeout
        while time.monotonic() < deadline:
            if tunnel.poll() is not None:
                stderr = tunnel.stderr.read().decode(errors="replace") if tunnel.stderr else ""
                raise RemoteMachineError({head.host: f"the SSH tunnel to the Ray Client port {self.client_server_port} "
                                                     f"failed: {stderr.strip()}"})
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", local_port)) == 0:
                    return f"ray://127.0.0.1:{local_port}"
            time.sleep(0.1)
        raise RemoteMachineError({head.host: f"the SSH tunnel did not open in {self.ssh_timeout:.0f} s."})
