"""Running commands on remote machines with the system ``ssh`` client, with errors a user can act on.

Why the system client: it honours the user's ssh setup (agent, ProxyJump in ~/.ssh/config, key types)
and needs no Python dependency. Every call is non-interactive (``BatchMode``) and turns ssh's failure
output into a message that names the host and says what to fix.

Host keys are checked against the user's known hosts (``~/.ssh/known_hosts``, or ``known_hosts_file``):
a host seen for the first time is trusted and recorded (``StrictHostKeyChecking=accept-new``), a host
whose key changed is refused. ``strict_host_key_checking=False`` is the explicit opt-out (any key is
accepted and none is recorded, so a re-created machine with a new key connects). Password login goes
through ``sshpass -e``: the password travels in sshpass's environment, never on a command line, and is
never written anywhere; without ``sshpass`` asking for a password is an error, raised before any
connection is tried.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field

__all__ = ["SshTarget", "SshError", "run_script", "ssh_command", "tunnel_command"]


class SshError(RuntimeError):
    """A remote machine could not be used; the message names the host and the fix."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host


@dataclass(frozen=True)
class SshTarget:
    """Where and how to log in."""

    host: str
    port: int = 22
    user: str | None = None
    ssh_key_file: str | None = None
    password: str | None = field(default=None, repr=False)
    connect_timeout: float = 10.0
    known_hosts_file: str | None = None  # None: ssh's own (~/.ssh/known_hosts and the user's ssh config)
    strict_host_key_checking: bool = True

    @property
    def label(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


def _options(target: SshTarget) -> list[str]:
    checking = "accept-new" if target.strict_host_key_checking else "no"
    options = [
        "-o", f"StrictHostKeyChecking={checking}", "-o", "LogLevel=ERROR",
        "-o", f"ConnectTimeout={max(1, int(target.connect_timeout))}", "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=4", "-p", str(target.port),
    ]
    if target.known_hosts_file is not None:
        options += ["-o", f"UserKnownHostsFile={os.path.expanduser(target.known_hosts_file)}"]
    elif not target.strict_host_key_checking:
        # unchecked: a stale key in ~/.ssh/known_hosts (a re-created machine) would make ssh refuse
        # password login; keep no record at all
        options += ["-o", "UserKnownHostsFile=/dev/null"]
    if target.password is not None:
        options += ["-o", "BatchMode=no", "-o", "PreferredAuthentications=password,keyboard-interactive",
                    "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"]
    else:
        options += ["-o", "BatchMode=yes"]
    if target.ssh_key_file is not None:
        options += ["-i", os.path.expanduser(target.ssh_key_file), "-o", "IdentitiesOnly=yes"]
    return options


def _prefix(target: SshTarget) -> tuple[list[str], dict[str, str] | None]:
    """The ``ssh`` (or ``sshpass ssh``) command start and the environment to run it in."""
    ssh = shutil.which("ssh")
    if ssh is None:
        raise SshError(target.host, "The ssh client is not installed on this machine; install it "
                       "(e.g. `apt-get install openssh-client`) to use remote machines.")
    if target.password is None:
        if target.ssh_key_file is not None:
            key = os.path.expanduser(target.ssh_key_file)
            if not os.path.isfile(key):
                raise SshError(target.host, f"{target.label}: ssh_key_file {target.ssh_key_file!r} does not exist "
                               "on this machine; point RemoteMachineConfig.ssh_key_file at your private key.")
        return [ssh], None
    sshpass = shutil.which("sshpass")
    if sshpass is None:
        raise SshError(target.host, f"{target.label}: password login needs `sshpass`, which is not installed "
                       "here. Install it (e.g. `apt-get install sshpass`), or better, use a key: set "
                       "RemoteMachineConfig.ssh_key_file and add the public key to ~/.ssh/authorized_keys there.")
    return [sshpass, "-e", ssh], {**os.environ, "SSHPASS": target.password}


def ssh_command(target: SshTarget, remote_command: str) -> tuple[list[str], dict[str, str] | None]:
    """The argv (and environment) that runs ``remote_command`` on ``target``."""
    prefix, env = _prefix(target)
    return [*prefix, *_options(target), target.destination(), remote_command], env


def tunnel_command(target: SshTarget, local_port: int, remote_host: str, remote_port: int
                   ) -> tuple[list[str], dict[str, str] | None]:
    """The argv of an ssh process forwarding ``127.0.0.1:local_port`` to ``remote_host:remote_port``
    as seen from ``target`` (no remote command; runs until killed)."""
    prefix, env = _prefix(target)
    forward = f"127.0.0.1:{local_port}:{remote_host}:{remote_port}"
    return [*prefix, *_options(target), "-N", "-o", "ExitOnForwardFailure=yes", "-L", forward,
            target.destination()], env


def explain_failure(target: SshTarget, stderr: str) -> str:
    """What ssh's own error output means for the user."""
    text = stderr.strip()
    lower = text.lower()
    where = target.label
    if "could not resolve hostname" in lower or "name or service not known" in lower:
        return f"{where}: the host name does not resolve; check RemoteMachineConfig.host. ssh: {text}"
    if "connection refused" in lower:
        return (f"{where}: connection refused; is sshd running there, and is RemoteMachineConfig.port right? "
                f"ssh: {text}")
    if any(s in lower for s in ("timed out", "no route to host", "network is unreachable", "connection reset")):
        return f"{where}: the machine is unreachable (down, or a firewall in the way?). ssh: {text}"
    if "host key verification failed" in lower or "remote host identification has changed" in lower:
        known = target.known_hosts_file or "~/.ssh/known_hosts"
        entry = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
        return (f"{where}: its host key does not match the one recorded in {known}, so ssh refuses to connect: "
                "the machine was reinstalled or re-keyed, or someone is intercepting the connection. If you know "
                f"the key changed, remove the old one with `ssh-keygen -R '{entry}' -f {known}` and run again "
                "(the new key is then recorded); RemoteMachineConfig.strict_host_key_checking=False turns the "
                "check off.")
    if "unprotected private key" in lower or "bad permissions" in lower:
        return f"{where}: ssh refuses the key because others can read it; run `chmod 600 {target.ssh_key_file}`."
    if "permission denied" in lower or "authentication failed" in lower:
        if target.password is not None:
            how = "the password was refused; check RemoteMachineConfig.password and user"
        elif target.ssh_key_file is not None:
            how = (f"the key {target.ssh_key_file} was refused; add its public key to ~/.ssh/authorized_keys of "
                   f"user {target.user or '(your user name)'} there, or fix ssh_key_file / user")
        else:
            how = ("no key of yours was accepted; set RemoteMachineConfig.ssh_key_file (and add its public key to "
                   "~/.ssh/authorized_keys there) or password")
        return f"{where}: login failed: {how}. ssh: {text}"
    return f"{where}: ssh failed: {text or 'no error output'}"


def run_script(target: SshTarget, script: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a bash ``script`` (sent on stdin) on ``target``; ssh's own failures raise ``SshError``,
    the script's exit status is the caller's to judge."""
    argv, env = ssh_command(target, "bash -s")
    try:
        proc = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=timeout, env=env,
                              start_new_session=True)
    except subprocess.TimeoutExpired as err:
        raise SshError(target.host, f"{target.label}: no answer within {timeout:.0f} s (command: "
                       f"{shlex.join(argv[:1])} ...); is the machine overloaded or the network slow?") from err
    if proc.returncode == 255:
        raise SshError(target.host, explain_failure(target, proc.stderr))
    if target.password is not None and proc.returncode in (5, 6) and not proc.stdout:
        raise SshError(target.host, explain_failure(target, proc.stderr or "Permission denied (sshpass)"))
    return proc
