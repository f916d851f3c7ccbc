"""The dashboard's web application: a JSON API over a :class:`StoreView`, and the offline frontend.

Every read endpoint is a plain function over the read-only view (Starlette runs them in its thread
pool). The only write is ``POST /api/stop``, present when the experiment runs in this process
(``NasExperiment.run(port=...)``); it needs a custom header, so a page on another site cannot
trigger it (a cross-origin request with that header needs a CORS preflight, which is never granted).
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nasflow.experiment.export import graph_code
from nasflow.experiment.store import StoreError, UnknownModelError

from .query import LOG_TAIL_BYTES, MAX_LOG_BYTES, QueryError, StoreView, TrialQuery, parse_ids

__all__ = ["create_app", "STATIC_DIR", "STOP_HEADER", "LOOPBACK_HOSTS"]

STATIC_DIR = Path(__file__).parent / "static"
STOP_HEADER = "X-Nasflow-Action"  # POST /api/stop needs this header with the value "stop"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                 b"object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]


class _SecurityHeaders:
    """Adds a strict content-security policy and no-sniff/no-referrer headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in _HEADERS if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a damaged store's non-finite number is sent as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()
        except ValueError:
            return json.dumps(_finite(content), allow_nan=False, separators=(",", ":")).encode()


def _error(status: int, message: str) -> Response:
    return _JSON({"error": message}, status_code=status)


def _model_id(request: Request) -> int:
    ids = parse_ids(request.path_params["model_id"], "A model id")
    if len(ids) != 1:
        raise QueryError(f"A model id is one integer, got {request.path_params['model_id'][:100]!r}.")
    return ids[0]


def _filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:80] or "experiment"


@functools.lru_cache(maxsize=64)
def generate_code(ir_json: str) -> str:
    """``graph_code``, cached: a page asks again for the same model's code."""
    return graph_code(ir_json)


class _Api:
    def __init__(self, view: StoreView, stop: Callable[[], None] | None) -> None:
        self.view = view
        self.stop_callback = stop
        self.stopping = threading.Event()

    # -- pages and polling --------------------------------------------------------------------

    def index(self, request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html")

    def version(self, request: Request) -> Response:
        return _JSON({"version": self.view.version()})

    def summary(self, request: Request) -> Response:
        summary = self.view.summary()
        running = summary["status"] == "running"
        summary.update(read_only=self.stop_callback is None, stopping=self.stopping.is_set() and running,
                       can_stop=self.stop_callback is not None and running and not self.stopping.is_set(),
                       metric_keys=self.view.metric_keys())
        return _JSON(summary)

    def progress(self, request: Request) -> Response:
        return _JSON(self.view.progress())

    # -- trials -------------------------------------------------------------------------------

    def trials(self, request: Request) -> Response:
        return _JSON(self.view.trials(TrialQuery.from_params(request.query_params.multi_items())))

    def choices(self, request: Request) -> Response:
        return _JSON({"choices": self.view.choices()})

    def parallel(self, request: Request) -> Response:
        return _JSON(self.view.parallel())

    def curves(self, request: Request) -> Response:
        ids_text = request.query_params.get("ids", "").strip()
        ids = None if ids_text in ("", "all") else parse_ids(ids_text)
        key = request.query_params.get("key", "default") or "default"
        return Response(self.view.curves(ids, key), media_type="application/json")

    def trial(self, request: Request) -> Response:
        return _JSON(self.view.trial(_model_id(request)))

    def log(self, request: Request) -> Response:
        text = request.query_params.get("bytes", "")
        try:
            size = int(text) if text else LOG_TAIL_BYTES
        except ValueError:
            raise QueryError(f"bytes must be an integer up to {MAX_LOG_BYTES}, got {text!r}.") from None
        return _JSON(self.view.log_tail(_model_id(request), size))

    def code(self, request: Request) -> Response:
        model_id = _model_id(request)
        try:
            return _JSON({"id": model_id, "code": self._code(model_id)})
        except QueryError as err:
            return _JSON({"id": model_id, "code": None, "reason": str(err)})

    def _code(self, model_id: int) -> str:
        ir_json = self.view.graph_ir(model_id)
        try:
            return generate_code(ir_json)
        except Exception as err:  # a stored IR this nasflow cannot turn into code: say why, on the page
            raise QueryError(f"Code cannot be generated for model {model_id}: {err}") from err

    # -- export and control -------------------------------------------------------------------

    def export(self, request: Request) -> Response:
        """``format=dict|code`` of ``ids=...`` or of the ``top_k`` best (default 1), as a download."""
        params = request.query_params
        fmt = params.get("format", "dict")
        if fmt not in ("dict", "code"):
            raise QueryError(f"format must be 'dict' or 'code', got {fmt!r}.")
        ids_text = params.get("ids", "").strip()
        ids = parse_ids(ids_text) if ids_text else None
        top_text = params.get("top_k", "1").strip() or "1"
        if not top_text.isdigit() or int(top_text) < 1:
            raise QueryError(f"top_k must be a positive integer, got {top_text!r}.")
        rows = self.view.export_rows(ids, None if ids else int(top_text))
        name = _filename(self.view.experiment_id)
        which = f"models-{'-'.join(map(str, ids))}" if ids and len(ids) <= 5 else (
            f"{len(rows)}-models" if ids else f"top{top_text}")
        if fmt == "dict":
            body = json.dumps([row["sample"] for row in rows], indent=2)
            filename, media = f"{name}-{which}.json", "application/json"
        else:
            body = "\n\n".join(f"# model {row['id']}, metric {_metric_text(row['metric'])}\n{self._code(row['id'])}"
                               for row in rows)
            filename, media = f"{name}-{which}.py", "text/x-python"
        return Response(body, media_type=media, headers={"content-disposition": f'attachment; filename="{filename}"'})

    def stop(self, request: Request) -> Response:
        if self.stop_callback is None:
            return _error(404, "This dashboard is read-only (nasflow view); stop the experiment where it runs.")
        if request.headers.get(STOP_HEADER) != "stop":
            return _error(403, f"Stopping needs the header {STOP_HEADER}: stop (sent by the dashboard's button).")
        if not self.stopping.is_set():
            self.stopping.set()
            threading.Thread(target=self.stop_callback, name="nasflow-dashboard-stop", daemon=True).start()
        return _JSON({"stopping": True}, status_code=202)


def _metric_text(value: Any) -> str:
    return "-" if value is None else f"{value:.6g}" if isinstance(value, float | int) else str(value)


def create_app(view: StoreView, *, stop: Callable[[], None] | None = None,
               allowed_hosts: Sequence[str] = LOOPBACK_HOSTS) -> Starlette:
    """The dashboard for ``view``; ``stop`` (the running experiment's stop) enables the stop control.

    ``allowed_hosts`` is checked against each request's Host header, so a page on another site cannot
    read a loopback dashboard through DNS rebinding; ``("*",)`` accepts any (``--host``)."""
    api = _Api(view, stop)
    routes = [
        Route("/", api.index),
        Route("/api/version", api.version),
        Route("/api/summary", api.summary),
        Route("/api/progress", api.progress),
        Route("/api/trials", api.trials),
        Route("/api/trials/{model_id}", api.trial),
        Route("/api/trials/{model_id}/log", api.log),
        Route("/api/trials/{model_id}/code", api.code),
        Route("/api/choices", api.choices),
        Route("/api/parallel", api.parallel),
        Route("/api/curves", api.curves),
        Route("/api/export", api.export),
        Route("/api/stop", api.stop, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR)),
    ]

    def bad_request(request: Request, err: Exception) -> Response:
        return _error(400, str(err))

    def not_found(request: Request, err: Exception) -> Response:
        return _error(404, str(err))

    def unavailable(request: Request, err: Exception) -> Response:
        return _error(503, str(err))

    def http_error(request: Request, err: Exception) -> Response:
        assert isinstance(err, HTTPException)
        if request.url.path.startswith("/api/"):
            return _error(err.status_code, err.detail)
        return PlainTextResponse(err.detail, status_code=err.status_code)

    return Starlette(
        routes=routes,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
                    Middleware(_SecurityHeaders)],
        exception_handlers={QueryError: bad_request, UnknownModelError: not_found, StoreError: unavailable,
                            HTTPException: http_error},
    )
