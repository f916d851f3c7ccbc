"""The web dashboard: watch, compare and export an experiment in the browser.

``nasflow view ID`` serves any stored experiment read-only; ``NasExperiment.run(port=N)`` serves the
running one, with a stop control. The server reads the store through ``query.StoreView`` (JSON and
SQL only, never pickle) and imports torch only to generate a graph-format model's code. The
frontend is plain JavaScript in ``static/``, shipped in the wheel: it needs no network or build.
Needs the ``dashboard`` extra (starlette, uvicorn).
"""

from .server import DEFAULT_PORT, Dashboard, bind, is_loopback, require_installed, serve

__all__ = ["DEFAULT_PORT", "Dashboard", "bind", "is_loopback", "require_installed", "serve"]
