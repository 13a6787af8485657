"""What one LeNet Lab server process holds besides its pages (app.py wires it into Streamlit):

- the executor that trains runs outside the web process, started with the server and shut down
  with it (a SIGTERM saves what trains as stopped);
- a cookie that lets a browser find its own runs again after a reload or in a second tab;
- the small JSON route a training run's live panel reads, and plotly.js for it, served from the
  installed Plotly package (the app must work with no network);
- for the Draw page's canvas: each model as ONNX, and onnxruntime-web's files (shipped in
  static/ort/), gzipped and cached by the browser."""
from __future__ import annotations

import contextlib
import gzip
import json
import re
import secrets
from pathlib import Path

import plotly
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from lenet_core.runs import Run, runs_root

from .trainers import executor, stop_executor  # noqa: F401 (started and stopped here)
from .routes import HEALTH_URL, LIVE_URL, ONNX_URL, ORT_URL, PLOTLY_URL
from .session import COOKIE, owner_of

COOKIE_MAX_AGE = 365 * 24 * 3600
RUN_ID = re.compile(r"[\w.-]{1,120}")
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"

_serving = False  # True in a process started by app.py, whose routes the pages can use


def serving() -> bool:
    return _serving


@contextlib.asynccontextmanager
async def lifespan(app):
    global _serving
    await run_in_threadpool(executor)  # workers warm up while the first page loads
    from .models import DEFAULT, MODELS_DIR
    from .onnx_models import warm

    warm(MODELS_DIR / DEFAULT.split(":", 1)[1])  # Draw's first model as ONNX, in the background
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


async def ort_file(request: Request) -> Response:
    """onnxruntime-web's script, module and wasm, gzipped: 3.8 MB on a browser's first Draw, then
    from its cache."""
    from .onnx_models import ORT_FILES
    from .onnx_models import ort_file as read

    name = request.path_params["name"]
    if name not in ORT_FILES:
        return Response(status_code=404)
    packed, plain = await run_in_threadpool(read, name)
    headers = {"Cache-Control": "public, max-age=604800", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(packed, media_type=ORT_FILES[name], headers={**headers, "Content-Encoding": "gzip"})
    if plain is None:  # no browser in use refuses gzip; a script might
        plain = await run_in_threadpool(gzip.decompress, packed)
    return Response(plain, media_type=ORT_FILES[name], headers=headers)


def model_folder(source: str, name: str, owner: str | None) -> Path | None:
    """The folder of a shipped model or of a run this browser may see, or None."""
    from .models import MODELS_DIR, SHIPPED

    if source == "shipped":
        return MODELS_DIR / name if name in SHIPPED else None
    if source != "run" or not RUN_ID.fullmatch(name) or name.startswith("."):
        return None
    run = Run(runs_root() / name)
    try:
        info = run.info()
    except Exception:
        return None
    return run.path if info.owner is None or info.owner == owner else None


async def onnx_model(request: Request) -> Response:
    """A model as ONNX for the Draw canvas (lenet_core/export.py): a shipped one, or a run its owner's
    browser may see. Its URL names the checkpoint's version, so the browser may keep it."""
    from lenet_core.checkpoint import CheckpointError
    from lenet_core.export import ExportError

    from .onnx_models import onnx_for

    folder = await run_in_threadpool(model_folder, request.path_params["source"], request.path_params["name"],
                                     owner_of(request.cookies.get(COOKIE)))
    if folder is None:
        return Response(status_code=404)
    try:
        data = await run_in_threadpool(onnx_for, folder)
    except (CheckpointError, ExportError, OSError) as e:
        return Response(f"{e}", status_code=422, media_type="text/plain")
    return Response(data, media_type="application/octet-stream", headers={"Cache-Control": "private, max-age=86400"})


def routes() -> list[Route]:
    return [Route("/" + LIVE_URL, live), Route("/" + PLOTLY_URL, plotly_js), Route("/" + HEALTH_URL, health),
            Route("/" + ORT_URL + "{name}", ort_file), Route("/" + ONNX_URL, onnx_model)]
