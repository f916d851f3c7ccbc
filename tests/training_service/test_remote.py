"""The remote training service against a real ``sshd`` on 127.0.0.1 with a generated key.

The test starts its own sshd (temporary host key, authorized keys and pid file) on a free port and
stops it at the end; it skips only where sshd cannot run. Machine checks run over real SSH, and a
full run brings up a two-node Ray cluster over SSH (head and worker both on this machine), runs
trials through Ray Client over an SSH tunnel, and tears everything down.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cloudpickle
import pytest

ray = pytest.importorskip("ray", reason='Ray is optional: pip install "nasflow[ray]"')

from support import HANG_GUARD_S, wait_until  # noqa: E402

import nasflow  # noqa: E402
from nasflow.training_service import TrialSpec  # noqa: E402
from nasflow.training_service.remote import (  # noqa: E402
    RemoteConfig,
    RemoteMachineConfig,
    RemoteMachineError,
    RemoteTrainingService,
    idle_gpus,
)
from nasflow.training_service.remote_scripts import TAG_VAR  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sshd fixture targets Linux")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sshd:
    port: int
    key: Path
    user: str
    tmp: Path

    def machine(self, **overrides: object) -> RemoteMachineConfig:
        settings = {"host": "127.0.0.1", "port": self.port, "user": self.user, "ssh_key_file": str(self.key),
                    "python_path": sys.executable, "known_hosts_file": str(self.tmp / "known_hosts"),
                    **overrides}  # the tests' known hosts, never the user's
        return RemoteMachineConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A private sshd on 127.0.0.1 that accepts one generated key."""
    binary = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.path.exists(p)),
                                          None)
    keygen, client = shutil.which("ssh-keygen"), shutil.which("ssh")
    if binary is None or keygen is None or client is None:
        pytest.skip("sshd / ssh / ssh-keygen not installed (apt-get install openssh-server openssh-client)")
    tmp = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key", "other_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True)
    shutil.copy(tmp / "client_key.pub", tmp / "authorized_keys")
    port = free_port()
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp}/host_key\nAuthorizedKeysFile {tmp}/authorized_keys\n"
        f"PidFile {tmp}/sshd.pid\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel ERROR\n")
    try:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
    except OSError as err:
        pytest.skip(f"sshd cannot run here: cannot create /run/sshd ({err})")
    log = open(tmp / "sshd.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(tmp / "sshd_config")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"sshd cannot run here: {(tmp / 'sshd.log').read_text().strip() or 'no output'}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield Sshd(port, tmp / "client_key", getpass.getuser(), tmp)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def tagged_processes(tag: str) -> list[int]:
    """Processes on this machine started under ``tag`` (Ray's own; renamed workers are children)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if f"{TAG_VAR}={tag}".encode() in f.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
    return found


# ----- configs, no SSH ---------------------------------------------------------------------------


def test_machine_config_keeps_nni_names_and_refuses_bad_values() -> None:
    machine = RemoteMachineConfig("gpu1", user="me", password="secret", gpu_indices="0, 1")
    assert machine.port == 22 and machine.gpu_indices == [0, 1] and machine.max_trial_number_per_gpu == 1
    assert "secret" not in repr(machine) and machine.to_dict()["password"] == "***"
    config = RemoteConfig(machine_list=[{"host": "a", "gpu_indices": 2}], reuse_mode=False)
    assert config.machine_list[0].gpu_indices == [2] and config.platform == "remote"
    assert config.to_dict()["machine_list"][0]["host"] == "a"
    with pytest.raises(ValueError, match="port"):
        RemoteMachineConfig("a", port=0)
    with pytest.raises(ValueError, match="gpu_indices"):
        RemoteMachineConfig("a", gpu_indices="zero")
    with pytest.raises(ValueError, match="ssh-agent"):
        RemoteMachineConfig("a", ssh_passphrase="pw")
    with pytest.raises(ValueError, match="max_trial_number_per_gpu differs"):
        RemoteTrainingService(RemoteConfig([RemoteMachineConfig("a"), RemoteMachineConfig("b",
                                                                                    max_trial_number_per_gpu=2)]))
    with pytest.raises(ValueError, match="machine_list is empty"):
        RemoteTrainingService(RemoteConfig([]))


def test_busy_gpus_are_left_out() -> None:
    table = "0, GPU-aaa\n1, GPU-bbb\n2, GPU-ccc\n"
    assert idle_gpus(table, "GPU-bbb\n") == [0, 2]
    assert idle_gpus(table, "") == [0, 1, 2]


def test_ray_start_commands_carry_gpus_token_and_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    """What runs on each machine, without SSH: the scripts are captured."""
    from nasflow.training_service import remote

    scripts: list[tuple[str, str]] = []

    def fake_run(target: object, script: str, timeout: float = 0) -> subprocess.CompletedProcess[str]:
        scripts.append((target.host, script))  # type: ignore[attr-defined]
        out = "Local node IP: 10.0.0.1\n  ray start --address='10.0.0.1:7000'\n" if "--head" in script else ""
        if "NASFLOW_STOPPED" in script:
            out = "NASFLOW_STOPPED 5 0\n"
        return subprocess.CompletedProcess([], 0, out, "")

    monkeypatch.setattr(remote, "run_script", fake_run)
    head, worker = RemoteMachineConfig("h", gpu_indices=[0, 2]), RemoteMachineConfig("w")
    service = RemoteTrainingService(RemoteConfig([head, worker]), ray_port=7000, ray_start_args=["--num-cpus=4"])
    service.machines = [remote.MachineInfo(head, "/env/bin/python", "3.11.0", ray.__version__, "0", [0, 2], False,
                                           7123),
                        remote.MachineInfo(worker, "/env/bin/python", "3.11.0", ray.__version__, "0", None, False,
                                           None)]
    address, head_ip = service._bring_up()
    assert (address, head_ip) == ("10.0.0.1:7000", "10.0.0.1") and service.started_cluster
    (host0, head_script), (host1, worker_script) = scripts
    assert (host0, host1) == ("h", "w")
    assert "export CUDA_VISIBLE_DEVICES=0,2" in head_script and "--num-gpus=2" in head_script
    assert "--head --port=7000" in head_script and "--runtime-env-agent-port=7123" in head_script
    assert "--address=10.0.0.1:7000" in worker_script and "CUDA_VISIBLE_DEVICES" not in worker_script
    assert "--num-gpus" not in worker_script  # gpu_indices=None: Ray finds the GPUs itself
    token = service._token
    assert token and all(f"RAY_AUTH_TOKEN={token}" in s and "--num-cpus=4" in s for s in (head_script, worker_script))
    tag = service._teardown.started[0][1]
    assert all(f"{TAG_VAR}={tag}" in s for s in (head_script, worker_script))
    scripts.clear()
    service.shutdown()  # stops what it started: the worker first, then the head
    assert [h for h, _ in scripts] == ["w", "h"] and all("NASFLOW_STOPPED" in s for _, s in scripts)


# ----- machine checks over SSH ---------------------------------------------------------------------


def test_checks_pass_for_this_machine(sshd: Sshd) -> None:
    bin_dir = os.path.dirname(sys.executable)  # NNI's style: the environment's bin directory
    service = RemoteTrainingService(RemoteConfig([sshd.machine(), sshd.machine(python_path=bin_dir)]))
    infos = service.check_machines()
    assert infos[0].python == sys.executable and infos[0].ray_version == ray.__version__
    assert infos[0].nasflow_version == nasflow.__version__ and infos[0].port_open is False
    assert infos[1].python.startswith(bin_dir)
    assert not service.started_cluster


def test_bad_machines_fail_before_anything_runs(sshd: Sshd, tmp_path: Path) -> None:
    no_nasflow = tmp_path / "python-without-nasflow"  # the same interpreter without site-packages
    no_nasflow.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    no_nasflow.chmod(0o755)
    machines = [
        sshd.machine(port=free_port()),  # nothing listens there
        sshd.machine(ssh_key_file=str(sshd.tmp / "other_key")),  # a key sshd does not accept
        sshd.machine(python_path="/nonexistent/bin/python"),
        sshd.machine(python_path=str(no_nasflow)),
        sshd.machine(ssh_key_file=str(tmp_path / "missing_key")),
    ]
    service = RemoteTrainingService(RemoteConfig(machines))
    with pytest.raises(RemoteMachineError) as caught:
        service.start()
    errors = list(caught.value.errors.values())
    assert len(errors) == 5, caught.value
    assert "connection refused" in errors[0] and "RemoteMachineConfig.port" in errors[0]
    assert "login failed" in errors[1] and "other_key" in errors[1] and "authorized_keys" in errors[1]
    assert "no Python interpreter at python_path='/nonexistent/bin/python'" in errors[2]
    assert "cannot import nasflow" in errors[3] and "pip install" in errors[3]
    assert "does not exist" in errors[4] and "ssh_key_file" in errors[4]
    assert all("127.0.0.1" in key for key in caught.value.errors)
    assert not service.started_cluster
    service.shutdown()


def test_password_login_needs_sshpass(sshd: Sshd) -> None:
    if shutil.which("sshpass"):
        pytest.skip("sshpass is installed here; this checks the message given without it")
    service = RemoteTrainingService(RemoteConfig([sshd.machine(ssh_key_file=None, password="pw")]))
    with pytest.raises(RemoteMachineError, match="sshpass"):
        service.check_machines()


# ----- a full run --------------------------------------------------------------------------------------


def report_where() -> None:
    nasflow.report_intermediate_result(0.5)
    nasflow.report_final_result({"default": 1.0, "tag": os.environ.get(TAG_VAR), "pid": os.getpid()})


def run_trials(service: RemoteTrainingService, count: int, prefix: str, limit: float = HANG_GUARD_S) -> dict[str, list]:
    pending = [TrialSpec(f"{prefix}{i}", cloudpickle.dumps(report_where)) for i in range(count)]
    events: dict[str, list] = {}
    deadline = time.monotonic() + limit
    while sum(1 for e in events.values() if e[-1].kind == "end") < count:
        assert time.monotonic() < deadline, events
        while pending and service.capacity() > 0:
            service.submit(pending.pop(0))
        for event in service.poll_events(0.2):
            events.setdefault(event.trial_id, []).append(event)
    return events


def test_full_run_brings_up_ray_over_ssh_runs_trials_and_tears_down(sshd: Sshd, tmp_path: Path) -> None:
    if ray.is_initialized():
        pytest.skip("this process is already connected to Ray")
    ray_port = free_port()
    args = ["--num-cpus=1", "--object-store-memory=80000000", f"--dashboard-port={free_port()}"]
    machines = [sshd.machine(), sshd.machine()]  # a head and a worker node, both on this machine
    service = RemoteTrainingService(RemoteConfig(machines), trial_concurrency=2, ray_port=ray_port,
                                    client_server_port=free_port(), ray_start_args=args, connect="client",
                                    log_dir=tmp_path / "logs")
    tag = None
    auth_before = os.environ.get("RAY_AUTH_TOKEN")
    try:
        service.start()
        assert service.started_cluster and service.address and service.address.startswith("ray://127.0.0.1:")
        tag = service._teardown.started[0][1]
        assert sum(n["Alive"] for n in ray.nodes()) == 2
        events = run_trials(service, 2, "r")
        for trial_events in events.values():
            assert [e.kind for e in trial_events] == ["started", "intermediate", "final", "end"]
            assert trial_events[-1].status == "succeeded"
            assert trial_events[2].value["tag"] == tag  # ran on the cluster this service started

        # A second service on the same head port finds the running cluster, joins it, leaves it up.
        joiner = RemoteTrainingService(RemoteConfig([sshd.machine()]), ray_port=ray_port)
        with joiner:
            assert not joiner.started_cluster
            assert all(e[-1].status == "succeeded" for e in run_trials(joiner, 1, "j").values())
        assert tagged_processes(tag), "the joining service must not stop a cluster it did not start"
    finally:
        service.shutdown()
    assert not ray.is_initialized()
    assert service._teardown.tunnel is None
    assert os.environ.get("RAY_AUTH_TOKEN") == auth_before  # the cluster's token was this service's only
    wait_until(lambda: not tagged_processes(tag or "-"), "the cluster's processes to exit", interval=0.2)
    assert not os.path.exists(f"/tmp/{tag}")


# ----- host keys and secrets -----------------------------------------------------------------------


def test_a_new_host_key_is_recorded_once_and_a_changed_one_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    from nasflow.training_service.ssh import SshError, run_script

    known = tmp_path / "known_hosts"
    machine = sshd.machine(known_hosts_file=str(known))
    assert run_script(machine.target(), "echo hello").stdout.strip() == "hello"  # first contact: accepted
    host_key = (sshd.tmp / "host_key.pub").read_text().split()[:2]
    entry = f"[127.0.0.1]:{sshd.port}"
    assert known.read_text().split()[1:] == host_key  # recorded in the given file (the name may be hashed)
    found = subprocess.run(["ssh-keygen", "-F", entry, "-f", str(known)], capture_output=True, text=True)
    assert found.returncode == 0 and host_key[1] in found.stdout
    assert run_script(machine.target(), "echo again").stdout.strip() == "again"

    impostor = (sshd.tmp / "other_key.pub").read_text().split()[:2]  # another key recorded for this host
    known.write_text(" ".join([entry, *impostor]) + "\n")
    with pytest.raises(SshError) as caught:
        run_script(machine.target(), "echo never")
    message = str(caught.value)
    assert f"127.0.0.1:{sshd.port}" in message and "does not match the one recorded in" in message
    assert f"ssh-keygen -R '{entry}' -f {known}" in message and "strict_host_key_checking=False" in message
    assert known.read_text().split() == [entry, *impostor]  # left as it was

    opted_out = sshd.machine(known_hosts_file=str(tmp_path / "other_known_hosts"), strict_host_key_checking=False)
    assert run_script(opted_out.target(), "echo trusting").stdout.strip() == "trusting"


def test_ssh_never_uses_dev_null_known_hosts_nor_puts_a_password_on_the_command_line() -> None:
    from nasflow.training_service.ssh import SshTarget, _options

    options = _options(SshTarget("h", password="hunter2-secret"))
    assert "StrictHostKeyChecking=accept-new" in options and not any("/dev/null" in o for o in options)
    assert not any("hunter2" in o for o in options)
    assert "hunter2" not in repr(SshTarget("h", password="hunter2-secret"))
    # opted out: no record either, or a stale key of a re-created machine would disable password login
    assert "UserKnownHostsFile=/dev/null" in _options(SshTarget("h", strict_host_key_checking=False))


PASSWORD = "pw-6a1f-never-on-disk"


def test_a_pickled_machine_config_leaves_its_password_out_and_a_copy_keeps_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    machine = RemoteMachineConfig("gpu-1.lab", user="me", password=PASSWORD)
    assert PASSWORD.encode() not in cloudpickle.dumps(machine) and copy.deepcopy(machine).password == PASSWORD
    restored = cloudpickle.loads(cloudpickle.dumps(machine))
    assert restored.password is None and restored.password_variables()[0] == "NASFLOW_SSH_PASSWORD_GPU_1_LAB"
    monkeypatch.setenv("NASFLOW_SSH_PASSWORD", "from-env")
    assert [c.login_password() for c in (restored, copy.copy(restored), copy.deepcopy(restored))] == ["from-env"] * 3


def files_holding(root: Path, secret: bytes) -> list[Path]:
    """Every file under ``root`` whose bytes contain ``secret`` (plain, or hex-encoded as the setup is)."""
    return [path for path in root.rglob("*") if path.is_file()
            and (secret in path.read_bytes() or secret.hex().encode() in path.read_bytes())]


def failing_trial(model: object) -> None:  # never runs: the machine refuses password logins
    nasflow.report_final_result(1.0)


def test_a_remote_password_never_lands_on_disk_and_resume_asks_for_it(sshd: Sshd, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from nasflow.evaluator import FunctionalEvaluator
    from nasflow.experiment import NasExperiment, NasExperimentConfig
    from nasflow.nn import ModelSpace, MutableLinear
    from nasflow.strategy import Random

    class Space(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.fc = MutableLinear(2, nasflow.choice("width", [1, 2]))

    machines = RemoteConfig([sshd.machine(ssh_key_file=None, password=PASSWORD)])
    config = NasExperimentConfig("ts", "simplified", machines, max_trial_number=1,
                                 experiment_working_directory=str(tmp_path), progress=False)
    experiment = NasExperiment(Space(), FunctionalEvaluator(failing_trial), Random(seed=0), config, id="secret")
    with pytest.raises(RuntimeError, match="remote machine"):  # sshd takes keys only (or sshpass is missing)
        experiment.run()
    folder = tmp_path / "secret"
    assert (folder / "nasflow.db").exists() and files_holding(tmp_path, PASSWORD.encode()) == []
    assert machines.machine_list[0].password == PASSWORD  # the user's own object keeps it

    for name in RemoteMachineConfig("127.0.0.1").password_variables():
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="NASFLOW_SSH_PASSWORD_127_0_0_1"):  # resume: give it again
        NasExperiment.resume("secret", experiment_working_directory=str(tmp_path))
    monkeypatch.setenv("NASFLOW_SSH_PASSWORD_127_0_0_1", PASSWORD)
    with pytest.raises(RuntimeError, match="sshpass|password was refused"):  # now it is used to log in
        NasExperiment.resume("secret", experiment_working_directory=str(tmp_path))
    assert files_holding(tmp_path, PASSWORD.encode()) == []
