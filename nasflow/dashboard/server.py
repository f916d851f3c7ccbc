"""Serving the dashboard: a uvicorn server in a background thread, on a socket bound up front.

Binding first (``bind``) makes a busy port an immediate, clear error (before an experiment creates
anything), makes ``port=0`` pick a free port, and lets the first browser request queue in the
socket's backlog while the server thread starts. The default address is 127.0.0.1; any other host
is served with a warning, because the dashboard has no authentication.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable

__all__ = ["Dashboard", "DEFAULT_PORT", "bind", "is_loopback", "require_installed", "serve"]

_logger = logging.getLogger(__name__)

DEFAULT_PORT = 8080  # NNI's default web UI port


def require_installed() -> None:
    """Raise an ImportError with the install command when the web stack is missing."""
    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"The dashboard needs {' and '.join(missing)}: pip install 'nasflow[dashboard]'.")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port); errors name the address and a fix."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer from 0 to 65535 (0 picks a free one), got {port!r}.")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as err:
        raise ValueError(f"Cannot serve the dashboard on host {host!r}: {err.strerror}. Use an address of this "
                         "machine, e.g. 127.0.0.1.") from err
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise OSError(err.errno, f"Cannot serve the dashboard on {host}:{port}: {err.strerror}. "
                                 "Choose another port (port=0 picks a free one).") from err
    return sock


class Dashboard:
    """A running dashboard server; ``close()`` stops it (and is safe to call twice)."""

    def __init__(self, sock: socket.socket, path: str | os.PathLike[str], stop: Callable[[], None] | None,
                 exposed: bool) -> None:
        import uvicorn

        from .app import LOOPBACK_HOSTS, create_app
        from .query import StoreView

        self.view = StoreView(path)
        app = create_app(self.view, stop=stop, allowed_hosts=("*",) if exposed else LOOPBACK_HOSTS)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", loop="asyncio",
                                proxy_headers=False, server_header=False, timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._socket = sock
        host, port = sock.getsockname()[:2]
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # a wildcard is reachable here too
        self.url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"
        self.host, self.port = host, port
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"nasflow-dashboard-{port}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop serving: open requests finish, the socket and the store are closed."""
        self._server.should_exit = True
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._socket.close()
        self.view.close()

    def wait(self) -> None:
        """Serve until Ctrl-C (or ``close()`` from another thread)."""
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Dashboard({self.url!r}, {'running' if self.running else 'closed'})"


def serve(path: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          sock: socket.socket | None = None, stop: Callable[[], None] | None = None) -> Dashboard:
    """Serve the dashboard of the experiment stored at ``path`` (its folder or database file).

    Read-only unless ``stop`` is given (the running experiment's stop, shown as a button). Binds
    ``host:port`` unless an already bound ``sock`` is passed; a non-loopback host is served to anyone
    who can reach it, with a warning."""
    require_installed()
    sock = sock if sock is not None else bind(host, port)
    exposed = not is_loopback(sock.getsockname()[0])
    try:
        dashboard = Dashboard(sock, path, stop, exposed)
    except BaseException:
        sock.close()
        raise
    if exposed:
        _logger.warning("The dashboard listens on %s:%s without authentication: anyone who can reach this address "
                        "can read the experiment's config, samples, metrics and trial logs.",
                        dashboard.host, dashboard.port)
    return dashboard
