"""The trial side of the local training service: the message framing and the worker loop.

A worker is a process forked from the fork server (see ``forkserver.py``), so torch is already
imported when it starts. It reads a config message and then ``run`` messages from its channel (a
Unix stream socket to the parent), runs each payload through ``run_payload`` and streams the
trial's events back on the same channel as they happen.

Messages, parent -> worker: ``("config", dict)``, then ``("run", trial_id, payload, log_path, gpus)``
(``gpus`` is ``None`` when GPUs are not managed) or ``("exit",)``.
Worker -> parent: ``("started", trial_id, {"pid", "gpus", "log_path"})``,
``("intermediate" | "final", trial_id, value)``, ``("end", trial_id, status, error, cuda_gpus)``
where ``cuda_gpus`` is the GPU list CUDA was initialised with (``None`` while CUDA is untouched):
a reused worker cannot switch devices after that, and the parent must know it.
"""

from __future__ import annotations

import ctypes
import io
import os
import pickle
import socket
import struct
import sys
import threading
import traceback
from typing import Any, NoReturn

from .payload import run_payload

__all__ = ["send_message", "recv_message", "MessageReader", "worker_main"]

_HEADER = struct.Struct("!Q")


def send_message(sock: socket.socket, message: Any) -> None:
    """Send one length-prefixed pickle; blocking, so a large payload simply waits for the reader."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) < 65536:
        sock.sendall(_HEADER.pack(len(data)) + data)
    else:  # skip the copy of a big payload
        sock.sendall(_HEADER.pack(len(data)))
        sock.sendall(data)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise EOFError("channel closed")
        chunks += chunk
    return bytes(chunks)


def recv_message(sock: socket.socket) -> Any:
    """Blocking read of one message (the worker side, which has nothing else to do)."""
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    return pickle.loads(_recv_exact(sock, size))


class MessageReader:
    """Non-blocking reader for the parent's event loop.

    It never waits for the rest of a message: a worker killed in the middle of a write (or a
    grandchild that inherited the socket and keeps it open) must not hang the parent.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.eof = False
        self._buffer = bytearray()

    def read(self) -> list[Any]:
        """Everything complete that is readable now."""
        while not self.eof:
            try:
                chunk = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.eof = True
                break
            if not chunk:
                self.eof = True
            self._buffer += chunk
        messages = []
        offset = 0
        while len(self._buffer) - offset >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer, offset)
            end = offset + _HEADER.size + size
            if end > len(self._buffer):
                break
            messages.append(pickle.loads(self._buffer[offset + _HEADER.size : end]))
            offset = end
        del self._buffer[:offset]
        return messages


class _Channel:
    """The worker's end; report calls may come from any thread of the trial, hence the lock."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, message: Any) -> None:
        with self.lock:
            send_message(self.sock, message)


_libc: Any = None


def _flush_output() -> None:
    """Flush Python's and C's stdio buffers, so nothing is lost by ``os._exit`` or a redirect."""
    global _libc
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None)
        _libc.fflush(None)
    except (OSError, AttributeError):
        pass


def _redirect_output(log_path: str) -> None:
    """Point file descriptors 1 and 2 at the trial's log, so C extensions' output lands there too."""
    _flush_output()
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), mode=0o700, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # a trial's output may be private
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _line_buffered_stdio() -> None:
    """Fresh line-buffered text streams on fds 1 and 2, so a trial's log grows while it runs."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = io.TextIOWrapper(
            io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True
        )
        setattr(sys, name, stream)


def _apply_config(config: dict[str, Any]) -> None:
    """Match the parent's environment (with the trials' thread settings), working directory and
    import path; cap CPU threads; give the process random state of its own."""
    wanted = config["env"]
    for key in [key for key in os.environ if key not in wanted]:
        del os.environ[key]
    for key, value in wanted.items():  # only the differences: putenv for every variable costs ~0.5 ms
        if os.environ.get(key) != value:
            os.environ[key] = value
    sys.path[:] = config["sys_path"]
    try:
        os.chdir(config["cwd"])
    except OSError:
        pass
    torch = sys.modules.get("torch")
    # The OpenMP pool was sized when the server imported torch; the env vars only reach subprocesses.
    if torch is not None and torch.get_num_threads() != config["threads"]:
        torch.set_num_threads(config["threads"])
    _fresh_random_state(torch)


def _fresh_random_state(torch: Any) -> None:
    """Seed the generators a fork shares with the server from the OS, as a new process would be.

    Python's ``random`` reseeds itself in a forked child; torch's default generator (seeded at
    random when torch loads) and numpy's global one do not, so without this every fresh worker
    would initialise its weights, and draw its dropout masks and shuffles, identically.
    """
    if torch is not None:
        torch.default_generator.seed()
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        np_random.seed()


def _cuda_gpus(gpus: list[int] | None) -> list[int] | None:
    """The GPUs this process's CUDA context was created with, ``None`` while CUDA is untouched."""
    torch = sys.modules.get("torch")
    try:
        initialised = torch is not None and torch.cuda.is_initialized()
    except Exception:  # a broken CUDA install must not fail a CPU trial
        initialised = False
    return (gpus or []) if initialised else None


def _set_visible_gpus(gpus: list[int] | None, config: dict[str, Any]) -> None:
    """Show the trial its GPUs; unmanaged trials see what the parent saw (not a previous trial's set)."""
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
    elif "CUDA_VISIBLE_DEVICES" in config["env"]:
        os.environ["CUDA_VISIBLE_DEVICES"] = config["env"]["CUDA_VISIBLE_DEVICES"]
    else:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)


def _run_trial(channel: _Channel, message: tuple, config: dict[str, Any], pinned: list[int] | None) -> list[int] | None:
    """Run one trial and report its end; returns the GPUs CUDA is pinned to afterwards."""
    _, trial_id, payload, log_path, gpus = message
    pid = os.getpid()
    try:
        _redirect_output(log_path)
    except OSError as err:  # said in the trial's end, not as a bare exit code of the worker
        channel.send(("end", trial_id, "failed", f"The trial cannot write its log file {log_path}: {err!r}. Make "
                      "its folder writable (or choose another experiment_working_directory).", pinned))
        return pinned
    _set_visible_gpus(gpus, config)
    channel.send(("started", trial_id, {"pid": pid, "gpus": list(gpus or []), "log_path": log_path}))
    status, error = "succeeded", None
    try:
        if pinned is not None and gpus is not None and list(gpus) != pinned:
            raise RuntimeError(
                f"This reused worker initialised CUDA with GPUs {pinned} and cannot switch to {gpus}; "
                "the service should have given the trial a fresh worker."
            )
        run_payload(payload, lambda kind, value: channel.send((kind, trial_id, value)))
    except SystemExit as exc:  # sys.exit(n) with n != 0 (run_payload ends a trial calling sys.exit(0) normally)
        status, error = "failed", f"The trial called sys.exit({exc.code!r}).\n{traceback.format_exc()}"
    except BaseException:
        status, error = "failed", traceback.format_exc()
        traceback.print_exc()  # also into the trial's log, next to its own output
    if os.getpid() != pid:  # a child the trial forked returned here: it must not speak for the worker
        _flush_output()
        os._exit(0 if status == "succeeded" else 1)
    _flush_output()
    cuda = _cuda_gpus(gpus) if pinned is None else pinned
    channel.send(("end", trial_id, status, error, cuda))
    return cuda


def worker_main(sock: socket.socket) -> NoReturn:
    """Body of a forked worker: configure, then run trials until told to stop (one, unless reused)."""
    code = 0
    try:
        channel = _Channel(sock)
        _line_buffered_stdio()
        kind, config = recv_message(sock)
        assert kind == "config", kind
        _apply_config(config)
        os.umask(0o077)  # what a trial writes (checkpoints, its folder, logs) is its user's alone, whatever the umask
        pinned: list[int] | None = None
        while True:
            message = recv_message(sock)
            if message[0] != "run":
                break
            pinned = _run_trial(channel, message, config, pinned)
            if not config["reuse"]:
                break
    except EOFError:  # the parent went away; nothing left to report to
        code = 0
    except BaseException:
        traceback.print_exc()
        code = 70
    _flush_output()
    os._exit(code)
