"""A fork server: one process that imports torch once and forks trial workers on request.

Starting a Python interpreter and importing torch takes seconds; forking a process that already
has them takes milliseconds. The parent cannot fork itself safely (it may hold threads and locks,
or a CUDA context), so it starts this small server instead, before anything else happens in it.

Control protocol, over a Unix SOCK_SEQPACKET socketpair (one pickle per packet, so no framing):
parent -> server ``("fork", token)`` with the worker's channel fd attached, ``("import", names,
sys_path, cwd)``, ``("kill", token, signal)``, ``("shutdown",)``; server -> parent ``("ready", pid)``,
``("forked", token, pid)``, ``("fork_failed", token, reason)``, ``("exited", token, pid,
wait_status)``. Tokens, not pids, name workers: the server is their parent, so it is the only
process that can signal a pid without the risk of hitting a reused one, and the only one that can
read an exit status.

What workers inherit: the preload modules, and what a trial would otherwise do on its own at
start: the modules its payload names (``"import"``, sent before the first fork that needs them; a
module whose import starts a thread or CUDA is refused, since neither survives a fork: the server
re-executes itself without it, keeping its workers), and torch's lazy set-up of autograd and
optimizers (see ``_warm_up``). Each of these costs a fresh worker 0.5-2 s otherwise.

Lifetime: the server exits (killing its workers) when the control socket reaches EOF, i.e. when the
parent dies however it dies; workers have ``PR_SET_PDEATHSIG = SIGKILL`` toward the server, so a
SIGKILLed server takes them along too.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import pickle
import re
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

__all__ = ["ForkServer", "serve"]

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_MADV_COLLAPSE = 25
_HUGE_PAGE = 2 << 20
_COLLAPSE_STEP = 4 * _HUGE_PAGE
_COLLAPSE_AFTER_FORKS = 16
_COLLAPSE_AFTER_IDLE = 0.05
_MAX_PACKET = 65536
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[2])['sys_path']; "
    "from nasflow.training_service.forkserver import serve; serve()"
)


_PICKLED_NAME = re.compile(rb"\x8c([\x01-\xff])([A-Za-z_][A-Za-z0-9_.]*)")  # SHORT_BINUNICODE of a dotted name
_NOT_BY_NAME = frozenset({"__main__", "__mp_main__", "builtins"})


def pickled_modules(payload: bytes) -> list[str]:
    """Modules of this process that a pickle names, in order: those of the functions and classes it
    holds by reference and of the modules their globals use (cloudpickle's ``subimport``).

    Unpickling imports them, which for a library such as scikit-learn takes the better part of a
    second in every fresh worker; the fork server imports them once instead. A scan of the bytes,
    not an unpickling: any short string that names an imported module counts, which at worst
    imports in the server a module the parent already imported.
    """
    from cloudpickle import cloudpickle as impl

    by_value = getattr(impl, "_is_registered_pickle_by_value", lambda module: False)
    names: dict[str, None] = {}
    for match in _PICKLED_NAME.finditer(payload):
        size, text = match.group(1)[0], match.group(2)
        if len(text) < size:
            continue
        name = text[:size].decode("ascii")
        module = sys.modules.get(name)
        if (module is not None and name not in _NOT_BY_NAME and getattr(module, "__spec__", None) is not None
                and not by_value(module)):  # registered to travel by value: trials never import it
            names[name] = None
    return list(names)


class ForkServer:
    """The parent's handle on a fork server process."""

    def __init__(self, preload: Sequence[str], env: Mapping[str, str]) -> None:
        self.preload = list(preload)
        self.env = dict(env)
        self.process: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.pid: int | None = None
        self.dead = False
        self.owner = os.getpid()  # a forked copy of the parent must not stop the parent's server
        self.ready = False  # it said "ready": the preload worked
        self.forked_any = False

    def start(self) -> None:
        """Launch the server; returns at once, requests queue up while it imports the preload modules."""
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        options = {"preload": self.preload, "sys_path": list(sys.path)}
        env = {"PYTORCH_NVML_BASED_CUDA_CHECK": "1", **self.env}  # see _fork_state; workers get the parent's
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(child_sock.fileno()), json.dumps(options)],
                pass_fds=[child_sock.fileno()],
                stdin=subprocess.DEVNULL,
                env=env,
                process_group=0,  # a terminal's Ctrl-C reaches the parent only; the parent decides
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        self.sock = parent_sock
        self.pid = self.process.pid

    def fileno(self) -> int:
        assert self.sock is not None
        return self.sock.fileno()

    def _send(self, message: tuple, fds: Sequence[int] = ()) -> None:
        if self.sock is None or self.dead:
            raise RuntimeError("The fork server of the local training service is not running.")
        data = pickle.dumps(message)
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.send(data)

    def fork(self, token: int, channel_fd: int) -> None:
        """Ask for a worker that will talk over ``channel_fd`` (the server gets its own copy)."""
        self._send(("fork", token), [channel_fd])
        self.forked_any = True

    def import_modules(self, names: Sequence[str]) -> None:
        """Have the server import ``names`` before it forks again (a module that fails to import,
        or that starts a thread or CUDA, is left to the trials)."""
        for start in range(0, len(names), 200):  # a packet stays well under _MAX_PACKET
            self._send(("import", list(names[start : start + 200]), list(sys.path), os.getcwd()))

    def kill(self, token: int, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(OSError, RuntimeError):  # a dead server has no workers left to kill
            self._send(("kill", token, int(sig)))

    def read(self) -> list[tuple]:
        """Messages available now; sets ``dead`` when the server is gone."""
        messages: list[tuple] = []
        while self.sock is not None and not self.dead:
            try:
                data = self.sock.recv(_MAX_PACKET, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self.dead = True
                break
            messages.append(pickle.loads(data))
            self.ready = self.ready or messages[-1][0] == "ready"
        return messages

    def stop(self, timeout: float = 10.0) -> None:
        """Kill every worker and the server, and wait until they are gone (also run at exit and on GC)."""
        if self.process is None or os.getpid() != self.owner:
            return
        if not self.forked_any:  # no worker can exist: do not wait for it to finish importing torch
            self.process.kill()
        with contextlib.suppress(OSError):
            assert self.sock is not None
            self.sock.send(pickle.dumps(("shutdown",)))
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:  # its workers die with it (PR_SET_PDEATHSIG)
            self.process.kill()
            self.process.wait()
        if self.sock is not None:
            self.sock.close()
        self.process = None
        self.sock = None
        self.dead = True


class _Server:
    """The loop inside the server process: fork, signal and reap workers; report their exits."""

    def __init__(self, control: socket.socket, collapser: _HugePageCollapser, options: dict[str, Any]) -> None:
        self.control = control
        self.collapser = collapser
        self.options = options
        self.forks = 0
        self.pids: dict[int, int] = {int(t): pid for t, pid in options.get("workers", {}).items()}  # token -> pid
        self.tokens: dict[int, int] = {pid: token for token, pid in self.pids.items()}  # pid -> token
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # the wake-up fd does the work
        try:
            self.libc: Any = ctypes.CDLL(None, use_errno=True)
            if sys.platform.startswith("linux"):
                self.libc.prctl(_PR_SET_NAME, b"nasflow-forksrv", 0, 0, 0)
        except OSError:
            self.libc = None

    def send(self, message: tuple) -> None:
        try:
            self.control.send(pickle.dumps(message))
        except OSError:  # the parent is gone
            self.stop_all()

    def run(self) -> NoReturn:
        self.send(("ready", os.getpid()))
        self.reap()  # workers adopted across a re-exec may have exited meanwhile
        while True:
            readable, _, _ = select.select([self.control, self.wake_r], [], [], self.collapser.wait(self.forks))
            if not readable and self.collapser.pending:
                self.collapser.step()
            if self.wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 4096):
                        pass
                self.reap()
            if self.control in readable:
                self.handle_request()

    def handle_request(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.control, _MAX_PACKET, 4)
        except OSError:
            data, fds = b"", []
        if not data:  # EOF: the parent died or dropped us
            self.stop_all()
        message = pickle.loads(data)
        if message[0] == "fork":
            self.fork(message[1], fds[0])
        elif message[0] == "import":
            sys.path[:] = message[2]
            with contextlib.suppress(OSError):
                os.chdir(message[3])
            self.import_modules(message[1])
        elif message[0] == "kill":
            pid = self.pids.get(message[1])
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, message[2])
        elif message[0] == "shutdown":
            self.stop_all()
        for fd in fds[1:]:
            os.close(fd)

    def fork(self, token: int, channel_fd: int) -> None:
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(channel_fd)
            self.send(("fork_failed", token, f"fork() failed: {exc}"))
            return
        if pid == 0:
            self.become_worker(channel_fd)
        os.close(channel_fd)
        self.pids[token] = pid
        self.forks += 1
        self.tokens[pid] = token
        self.send(("forked", token, pid))

    def become_worker(self, channel_fd: int) -> NoReturn:
        try:
            server_pid = os.getppid()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.close(self.wake_r)
            os.close(self.wake_w)
            self.control.close()
            if self.libc is not None and sys.platform.startswith("linux"):
                self.libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
                self.libc.prctl(_PR_SET_NAME, b"nasflow-trial", 0, 0, 0)  # what ps -o comm / top show
            if os.getppid() != server_pid:  # the server died before prctl took effect
                os._exit(1)
            from .worker import worker_main

            worker_main(socket.socket(fileno=channel_fd))
        finally:
            os._exit(70)

    def import_modules(self, names: Sequence[str]) -> None:
        """Import what trials would import (best effort); re-exec without a module that made forking unsafe."""
        for name in names:
            if name in sys.modules or name in self.options["refused"]:
                continue
            before = _fork_state()
            try:
                importlib.import_module(name)
            except BaseException:  # noqa: BLE001 - the trial imports it again and reports the real error
                self.options["refused"].append(name)
                continue
            unsafe = _fork_hazard(before)
            if unsafe:
                print(f"nasflow fork server: importing {name!r} {unsafe}; trials will import it themselves.",
                      file=sys.stderr, flush=True)
                self.options["refused"].append(name)
                self.reexec()
            self.options["imported"].append(name)
        gc.freeze()

    def reexec(self) -> NoReturn:
        """Start over as a fresh interpreter in this process: same pid, control socket and workers
        (they remain this process's children), preloading what was safe before."""
        try:
            _exec(self.control, {**self.options, "workers": {str(t): pid for t, pid in self.pids.items()}})
        finally:
            self.stop_all()  # exec failed: a server that may deadlock its forks must not serve

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            token = self.tokens.pop(pid, None)
            if token is not None:
                self.pids.pop(token, None)
                self.send(("exited", token, pid, status))

    def stop_all(self) -> NoReturn:
        """Kill and reap every worker, then exit: nothing of ours outlives this call."""
        for pid in self.tokens:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in self.tokens:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        os._exit(0)


class _HugePageCollapser:
    """Backs the server's anonymous memory (~150 MB after importing torch) with 2 MB pages.

    fork() copies one page-table entry per mapped 4 kB page and exit() tears them down again;
    with huge pages both touch 512 times fewer entries (measured on a 2-core machine: fork+exit of
    a worker 20 ms -> 6.5 ms). A worker that writes to a shared huge page gets a 4 kB copy (the
    kernel splits the mapping), so workers use no extra memory. Collapsing costs ~0.4 s of CPU, so
    it is done in small steps while the server has nothing else to do (see ``wait``). Best effort:
    ``MADV_COLLAPSE`` needs Linux >= 6.1; errors are ignored.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[int, int]] = []
        self.started = False
        if not sys.platform.startswith("linux"):
            return
        try:
            self.libc: Any = ctypes.CDLL(None, use_errno=True)
            self.libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            with open("/proc/self/maps") as maps:
                lines = maps.readlines()
        except (OSError, AttributeError):
            return
        for line in lines:
            parts = line.split()
            if len(parts) < 5 or not parts[1].startswith("rw") or (len(parts) > 5 and parts[5] != "[heap]"):
                continue  # only private anonymous memory: file mappings' page tables are not copied
            start, end = (int(x, 16) for x in parts[0].split("-"))
            start = -(-start // _HUGE_PAGE) * _HUGE_PAGE
            end = end // _HUGE_PAGE * _HUGE_PAGE
            for chunk in range(start, end, _COLLAPSE_STEP):
                self.pending.append((chunk, min(chunk + _COLLAPSE_STEP, end)))

    def wait(self, forks: int) -> float | None:
        """How long the server may wait for a request before doing a step of collapsing.

        The work pays off after a few dozen forks, so it starts once the server has forked
        ``_COLLAPSE_AFTER_FORKS`` workers (short trials: fork cost matters) or has been idle for
        ``_COLLAPSE_AFTER_IDLE`` seconds (long trials: nobody waits); a short burst of trials
        right after start-up is not slowed down by it.
        """
        if not self.pending:
            return None
        if forks >= _COLLAPSE_AFTER_FORKS or self.started:
            return 0.0
        return _COLLAPSE_AFTER_IDLE

    def step(self) -> None:
        """Collapse one chunk (a few ms); a fork request waits at most this long."""
        self.started = True
        start, end = self.pending.pop(0)
        self.libc.madvise(start, end - start, _MADV_COLLAPSE)


def _exec(control: socket.socket, options: dict[str, Any]) -> NoReturn:
    """Replace this process's program by a new fork server with ``options`` (same pid and socket)."""
    os.set_inheritable(control.fileno(), True)
    os.execv(sys.executable, [sys.executable, "-c", _BOOT, str(control.fileno()), json.dumps(options)])


def _fork_state() -> tuple[int, bool]:
    """What an import can do to this process that a fork does not carry over: start Python threads
    (absent in the child, which may need a lock one of them held) or start CUDA, which a child can
    no longer use: torch's CUDA context, or merely the driver, loaded by the first CUDA runtime call
    (``torch.cuda.is_available()`` at a module's top is enough; ``serve`` asks torch to answer that
    through NVML instead, which leaves the driver alone)."""
    torch = sys.modules.get("torch")
    try:
        cuda = bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # noqa: BLE001 - a broken CUDA install is not something an import did
        cuda = False
    if not cuda and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
            cuda = "/libcuda.so" in maps.read()
    return threading.active_count(), cuda


def _fork_hazard(before: tuple[int, bool]) -> str | None:
    threads, cuda = _fork_state()
    if cuda and not before[1]:
        return "started CUDA"
    return "started a thread" if threads > before[0] else None


def _warm_up() -> None:
    """Do once here what every trial's first training step would do on its own.

    The first optimizer built in a process makes torch import ``torch._dynamo`` (about 1 s of CPU,
    more than many trials' whole training), and the first Adam step sets up its kernels (about
    10 ms, shared with AdamW and SGD); a worker forked after this starts with both done. The
    warm-up uses a one-element layer, too small for OpenMP to start threads (workers reseed the
    generator it draws from). Building a space records torch.nn init arguments, which first wraps
    every torch.nn class's ``__init__``: done here too.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        layer = torch.nn.Linear(1, 1)
        optimizer = torch.optim.Adam(layer.parameters(), lr=0.0)
        layer(torch.zeros(1, 1)).sum().backward()
        optimizer.step()
    recording = sys.modules.get("nasflow.nn.init_recording")
    if recording is not None:
        recording.install()


def serve() -> NoReturn:
    """Entry point of the server process (see ``_BOOT``): preload, then serve fork requests."""
    control = socket.socket(fileno=int(sys.argv[1]))
    control.set_inheritable(False)
    options = json.loads(sys.argv[2])
    options.setdefault("imported", [])
    options.setdefault("refused", [])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the parent's shutdown or death stops us
    for name in options["preload"]:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a trial that needs it will fail with the real error
            print(f"nasflow fork server: could not preload {name!r}: {exc!r}", file=sys.stderr)
    from . import worker  # noqa: F401  (import now, not once per trial)

    if options.setdefault("warm_up", True):
        before = _fork_state()
        try:
            _warm_up()
        except Exception as exc:  # noqa: BLE001 - an optimisation: trials still run without it
            print(f"nasflow fork server: warm-up failed: {exc!r}", file=sys.stderr)
        unsafe = _fork_hazard(before)
        if unsafe:
            print(f"nasflow fork server: the warm-up {unsafe}; starting over without it.", file=sys.stderr, flush=True)
            _exec(control, {**options, "warm_up": False})
    for name in options["imported"]:  # after a re-exec: what was safe before
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    # Preloaded objects move to a generation the collector never scans, so a worker's garbage
    # collection does not write to (and copy) every page it shares with the server. (No
    # gc.collect() first: after importing torch it takes 0.1-0.2 s, for a few kB of garbage.)
    gc.freeze()
    _Server(control, _HugePageCollapser(), options).run()
