"""What one LeNet Lab server process holds besides its pages (app.py wires it into Streamlit):

- the executor that trains runs outside the web process, started with the server and shut down
  with it (a SIGTERM saves what trains as stopped);
- a cookie that lets a browser find its own runs again after a reload or in a second tab;
- the small JSON route a training run's live panel reads, and plotly.js for it, served from the
  installed Plotly package (the app must work with no network)."""
from __future__ import annotations

import atexit
import contextlib
import json
import re
import secrets
import threading
from pathlib import Path

import plotly
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from lenet_core.executors import Executor, make_executor
from lenet_core.runs import Run, runs_root

from .session import COOKIE, owner_of

COOKIE_MAX_AGE = 365 * 24 * 3600
RUN_ID = re.compile(r"[\w.-]{1,120}")
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
LIVE_URL = "lenet/runs/{run_id}/live"
PLOTLY_URL = "lenet/plotly.min.js"
HEALTH_URL = "lenet/health"

_executor: Executor | None = None
_lock = threading.Lock()
_serving = False  # True in a process started by app.py, whose routes the pages can use


def serving() -> bool:
    return _serving


def executor() -> Executor:
    """This process's executor (LENET_EXECUTOR: the local pool by default), started on first use:
    by the server's start-up, or by the first page that needs it when pages run without it (AppTest)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = make_executor().start(runs_root())
            atexit.register(stop_executor)
        return _executor


def stop_executor() -> None:
    global _executor
    with _lock:
        if _executor is not None:
            _executor.shutdown()
            _executor = None


@contextlib.asynccontextmanager
async def lifespan(app):
    global _serving
    await run_in_threadpool(executor)  # workers warm up while the first page loads
    _serving = True
    try:
        yield
    finally:
        _serving = False
        await run_in_threadpool(stop_executor)


class BrowserCookie:
    """ASGI middleware: a page load without the browser cookie gets one (random, HttpOnly)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or COOKIE in Request(scope).cookies:
            return await self.app(scope, receive, send)
        token = secrets.token_urlsafe(24)

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if headers.get("content-type", "").startswith("text/html"):  # the page, not its assets
                    headers.append("set-cookie", f"{COOKIE}={token}; Path=/; Max-Age={COOKIE_MAX_AGE}; "
                                                 "HttpOnly; SameSite=Lax")
            await send(message)

        await self.app(scope, receive, send_with_cookie)


async def live(request: Request) -> Response:
    """A run's live panel as JSON, for its owner's browser (or anyone's, for a run with no owner)."""
    from .live_panel import payload_for

    run_id = request.path_params["run_id"]
    if not RUN_ID.fullmatch(run_id) or run_id.startswith("."):
        return Response(status_code=404)
    run = Run(runs_root() / run_id)
    payload = await run_in_threadpool(payload_for, run, owner_of(request.cookies.get(COOKIE)))
    if payload is None:
        return Response(status_code=404)
    return Response(payload, media_type="application/json", headers={"Cache-Control": "no-store"})


async def health(request: Request) -> Response:
    """The pool as a health check sees it: workers alive, runs training and waiting, free disk;
    503 when no run could train now (no worker alive, or the disk is full)."""
    report = await run_in_threadpool(lambda: executor().health())
    return Response(json.dumps(report), status_code=200 if report["ok"] else 503, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


async def plotly_js(request: Request) -> Response:
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})


def routes() -> list[Route]:
    return [Route("/" + LIVE_URL, live), Route("/" + PLOTLY_URL, plotly_js), Route("/" + HEALTH_URL, health)]
