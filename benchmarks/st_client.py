"""A Streamlit client without a browser: one websocket session speaking Streamlit 1.67's own protocol.

For load tests: many of these in one asyncio loop load a server the way a room of browsers does,
without running the browsers (in a classroom they run on the students' laptops, not the server).

What the protocol is, as far as this client needs it (Streamlit 1.67, Starlette/uvicorn server):

- The route is `ws://HOST:PORT/_stcore/stream`. The client offers the subprotocol "streamlit";
  the Sec-WebSocket-Protocol header also carries the XSRF token and a session id to resume as
  its 2nd and 3rd entries, both optional. XSRF is only checked for an auth cookie, and a
  connection without an Origin header is allowed, so no cookie, token or header is needed.
- Every frame is binary protobuf: the client sends `BackMsg`, the server sends `ForwardMsg`,
  one per frame, uncompressed unless server.enableWebsocketCompression is on (off by default).
- A script run is asked for with `BackMsg.rerun_script` (a `ClientState`): the first one names
  the page as the URL does (`page_name="draw"`, no hash); later ones give `page_script_hash`
  (of the page shown: from the run's `navigation` message, which st.navigation sends, else
  from its `new_session`) and the states of all widgets the page shows
  (`widget_states`), as the browser does.
- Each run starts with `new_session` and ends with `script_finished` (status 2,
  FINISHED_EARLY_FOR_RERUN, when the script called st.rerun: another run follows). Between
  them come `delta`s whose `metadata.delta_path` says where each element goes. A new run
  request stops a run in progress (runner.fastReruns) and the server drops the stopped run's
  later messages; its `new_session` is never dropped. So when a request is sent only after
  the `new_session` of the one before it has arrived, the next `new_session` is that
  request's run: this is how a Session ties an answer to its request.
- Large elements can come as `ref_hash` (a reference to a message the browser has cached),
  but only for hashes the client lists in `ClientState.cached_message_hashes`. This client
  lists none, so the server always sends whole messages; a `ref_hash` counts as an error.
- A widget's value travels in a `WidgetState` whose field depends on the widget (a selectbox
  sends `string_value`, a button `trigger_value` in the one request that clicks it).
  Components v2 (`st.components.v2.component`, element `bidi_component`; e.g.
  streamlit-drawable-canvas 0.13) send their whole state as JSON in `json_value`: the
  frontend merges each `setStateValue(name, value)` into the dict it sent last.

Only the standard library, `websockets` (a dependency of streamlit itself) and
`streamlit.proto` are used.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlparse

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ContextInfo
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import connect

FINISHED_OK = ForwardMsg.FINISHED_SUCCESSFULLY
FINISHED_FOR_RERUN = ForwardMsg.FINISHED_EARLY_FOR_RERUN
STREAM_PATH = "/_stcore/stream"
MEDIA_TYPES = ("imgs",)  # elements whose URLs a browser fetches at once (st.image)


class ProtocolError(Exception):
    """The server answered with something this client cannot use (or not at all)."""


@dataclass
class Element:
    path: tuple[int, ...]
    kind: str            # the Element oneof: "markdown", "selectbox", "bidi_component", ...
    proto: Any           # that oneof's message
    t: float             # perf_counter when it arrived

    @property
    def widget_id(self) -> str:
        return getattr(self.proto, "id", "") if self.proto.DESCRIPTOR.fields_by_name.get("id") else ""

    @property
    def user_key(self) -> str | None:
        """The key the script gave the widget ("$$ID-<hash>-<key>"), or None."""
        parts = self.widget_id.split("-", 2)
        return parts[2] if len(parts) == 3 and parts[2] != "None" else None


@dataclass
class Run:
    """One script run as the client saw it: from its new_session to its script_finished."""

    index: int
    started: float
    page_script_hash: str
    elements: dict[tuple[int, ...], Element] = field(default_factory=dict)
    finished: float | None = None
    status: int | None = None

    @property
    def done(self) -> bool:
        return self.finished is not None

    def find(self, kind: str | None = None, where: Callable[[Element], bool] | None = None) -> list[Element]:
        return [e for e in self.elements.values() if (kind is None or e.kind == kind) and (where is None or where(e))]


@dataclass
class Request:
    """A rerun request; `first_run` is the index of the first run that can answer it."""

    sent: float
    first_run: int


# Each widget kind's value as the browser holds it right after the element arrives (the
# element's own default, or the value the server set). Kinds not listed are not sent back;
# the server then keeps the value it had, which is what the browser's value would be too.
def _selectlike(p) -> WidgetState | None:
    ws = WidgetState(id=p.id)
    if p.set_value or p.HasField("raw_value"):
        ws.string_value = p.raw_value
    elif p.HasField("default") and 0 <= p.default < len(p.options):
        ws.string_value = p.options[p.default]
    else:
        return None
    return ws


def _checkbox(p) -> WidgetState:
    return WidgetState(id=p.id, bool_value=p.value if p.set_value else p.default)


INITIAL_STATE: dict[str, Callable[[Any], WidgetState | None]] = {
    "selectbox": _selectlike, "radio": _selectlike, "checkbox": _checkbox,
}


class Session:
    """One browser tab's worth of protocol: a websocket, the runs it saw, its widget states.

    Use as `async with Session(url) as s:`; `await s.open_page("draw")`, then `s.widget(...)`
    to find a widget, `s.set_component_state` / `s.click` to change one, and `await s.rerun()`
    to send the page's widget states like the browser does after a change.
    """

    def __init__(self, base_url: str, *, timeout: float = 20.0, fetch_media: bool = True, name: str = ""):
        u = urlparse(base_url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.ws_url = f"ws://{self.host}:{self.port}{u.path.rstrip('/')}{STREAM_PATH}"
        self.timeout, self.fetch_media, self.name = timeout, fetch_media, name
        # What a browser tells the server about itself with each request (st.context).
        self.context_info = ContextInfo(timezone="UTC", timezone_offset=0, locale="en-US", is_embedded=False,
                                        color_scheme="light", url=f"http://{self.host}:{self.port}{u.path}")
        self.runs: list[Run] = []
        self.session_id: str | None = None
        self.page_script_hash = ""
        self.errors: list[str] = []
        self.bytes_in = self.msgs_in = 0
        self.media_fetched = self.media_missed = 0
        self.closed: str | None = None           # why the connection ended, once it has
        self._values: dict[str, WidgetState] = {}  # widget id -> state as the browser holds it
        self._components: dict[str, dict] = {}     # bidi component id -> its state dict
        self._triggers: list[WidgetState] = []     # sent with the next request only
        self._awaiting_start = False               # a request was sent and its run has not started
        self._changed = asyncio.Event()
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._media: set[asyncio.Task] = set()

    # -- connection ---------------------------------------------------------------

    async def __aenter__(self) -> "Session":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self) -> None:
        # No Origin header (allowed for non-browser clients), no proxy: loopback only. The client
        # offers permessage-deflate as browsers do; the server takes it only when
        # server.enableWebsocketCompression is on (off by default).
        self._ws = await asyncio.wait_for(
            connect(self.ws_url, subprotocols=["streamlit"], max_size=None, compression="deflate",
                    open_timeout=self.timeout, proxy=None), self.timeout)
        if self._ws.subprotocol != "streamlit":
            raise ProtocolError(f"server chose subprotocol {self._ws.subprotocol!r}")
        self._reader = asyncio.create_task(self._read(), name=f"st-session-{self.name}")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5)
            except Exception:  # (a timeout included)
                self._reader.cancel()
        for task in list(self._media):
            task.cancel()
        self.closed = self.closed or "closed by client"

    # -- receiving ----------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                t = time.perf_counter()
                self.bytes_in += len(data)
                self.msgs_in += 1
                msg = ForwardMsg()
                msg.ParseFromString(data)
                self._handle(msg, t)
                self._changed.set()
            self.closed = f"server closed the connection ({self._ws.close_code})"
        except Exception as e:  # a reset connection, a frame that does not parse
            self.closed = f"{type(e).__name__}: {e}"
        finally:
            self._changed.set()

    def _handle(self, msg: ForwardMsg, t: float) -> None:
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            ns = msg.new_session
            if ns.HasField("initialize"):
                self.session_id = ns.initialize.session_id
            self.page_script_hash = ns.page_script_hash
            self.runs.append(Run(len(self.runs), t, ns.page_script_hash))
            self._awaiting_start = False
        elif kind == "navigation":
            # With st.navigation the run is the main script's; the page it shows is this one.
            self.page_script_hash = msg.navigation.page_script_hash
        elif kind == "delta" and self.runs:
            delta = msg.delta
            if delta.WhichOneof("type") == "new_element":
                el = delta.new_element
                ek = el.WhichOneof("type")
                e = Element(tuple(msg.metadata.delta_path), ek, getattr(el, ek), t)
                self.runs[-1].elements[e.path] = e
                self._note_widget(e)
                if self.fetch_media and ek in MEDIA_TYPES:
                    for img in e.proto.imgs:
                        self._start_media_fetch(img.url)
        elif kind == "script_finished" and self.runs:
            run = self.runs[-1]
            run.finished, run.status = t, msg.script_finished
            if run.status == FINISHED_OK:
                self._forget_unmounted(run)
        elif kind == "ref_hash":
            self.errors.append(f"ref_hash {msg.ref_hash} although no cached messages were claimed")
        elif kind == "session_event" and msg.session_event.HasField("script_compilation_exception"):
            self.errors.append("script compilation error")
        if kind == "delta" and msg.delta.new_element.WhichOneof("type") == "exception":
            ex = msg.delta.new_element.exception
            self.errors.append(f"exception in the page: {ex.type}: {ex.message}")

    def _note_widget(self, e: Element) -> None:
        wid = e.widget_id
        if not wid:
            return
        initial = INITIAL_STATE.get(e.kind)
        if initial is not None and (wid not in self._values or getattr(e.proto, "set_value", False)):
            state = initial(e.proto)
            if state is not None:
                self._values[wid] = state

    def _forget_unmounted(self, run: Run) -> None:
        # After a complete run the browser drops the states of widgets no longer on the page.
        live = {e.widget_id for e in run.elements.values() if e.widget_id}
        for wid in [w for w in self._values if w not in live]:
            del self._values[wid]
        for wid in [w for w in self._components if w not in live]:
            del self._components[wid]

    # -- media (what a browser fetches right after the deltas) ----------------------

    def _start_media_fetch(self, url: str) -> None:
        if not url.startswith("/"):
            return
        task = asyncio.create_task(self._get(url))
        self._media.add(task)
        task.add_done_callback(self._media.discard)

    async def _get(self, path: str) -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.read(), self.timeout)
            writer.close()
            if head.startswith(b"HTTP/1.1 404"):
                # The session's next run replaced the image before it was fetched (the server
                # forgets a run's media once a newer run ends): a browser would show it broken.
                self.media_missed += 1
            elif not head.startswith(b"HTTP/1.1 200"):
                self.errors.append(f"GET {path}: {head[:40]!r}")
            else:
                self.media_fetched += 1
        except (OSError, asyncio.TimeoutError) as e:
            self.errors.append(f"GET {path}: {type(e).__name__}")

    # -- waiting ------------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until predicate() is truthy (checked after every message); return its value."""
        deadline = time.perf_counter() + (self.timeout if timeout is None else timeout)
        while True:
            value = predicate()
            if value:
                return value
            if self.closed:
                raise ProtocolError(f"connection ended: {self.closed}")
            left = deadline - time.perf_counter()
            if left <= 0:
                raise asyncio.TimeoutError
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    def finished_run(self, request: Request) -> Run | None:
        """The first run answering `request` that ran to its end (not stopped for a rerun)."""
        for run in self.runs[request.first_run:]:
            if run.done and run.status != FINISHED_FOR_RERUN:
                return run
        return None

    async def wait_finished(self, request: Request, timeout: float | None = None) -> Run:
        return await self.wait_until(lambda: self.finished_run(request), timeout)

    # -- sending ------------------------------------------------------------------

    async def _send_rerun(self, *, page_name: str = "") -> Request:
        # Send only once the previous request's run has started (see the module docstring): the
        # next new_session then belongs to this request. Usually that wait is nil; when the
        # server is too slow to even start a run, the wait counts in the caller's latency.
        await self.wait_until(lambda: not self._awaiting_start)
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = ""
        if page_name:
            cs.page_name = page_name        # as the browser's first request, from the URL path
            self.context_info.url = f"http://{self.host}:{self.port}/{page_name}"
        else:
            cs.page_script_hash = self.page_script_hash
        cs.widget_states.widgets.extend(self.widget_states())
        cs.context_info.CopyFrom(self.context_info)
        self._triggers.clear()
        # No cached_message_hashes: the server then never answers with a ref_hash.
        self._awaiting_start = True
        request = Request(time.perf_counter(), len(self.runs))
        await self._ws.send(msg.SerializeToString())
        return request

    async def open_page(self, page_name: str, timeout: float | None = None) -> Run:
        """The first request of a tab opened at /<page_name>; returns its complete run."""
        request = await self._send_rerun(page_name=page_name)
        run = await self.wait_finished(request, timeout)
        if run.status != FINISHED_OK:
            raise ProtocolError(f"page {page_name!r} ended with status {run.status}")
        return run

    async def rerun(self) -> Request:
        """Send the widget states (and any pending clicks), as the browser does after a change."""
        return await self._send_rerun()

    def widget_states(self) -> list[WidgetState]:
        states = list(self._values.values())  # (copied into the message by extend)
        states += [WidgetState(id=wid, json_value=json.dumps(v, separators=(",", ":")))
                   for wid, v in self._components.items()]
        return states + list(self._triggers)

    # -- widgets ------------------------------------------------------------------

    @property
    def last_run(self) -> Run | None:
        return self.runs[-1] if self.runs else None

    def last_complete_run(self) -> Run | None:
        return next((r for r in reversed(self.runs) if r.status == FINISHED_OK), None)

    def widget(self, kind: str | None = None, key_prefix: str | None = None, label: str | None = None) -> Element:
        """A widget of the last complete run, found by kind, key prefix and/or label."""
        run = self.last_complete_run()
        found = [] if run is None else run.find(kind, lambda e: bool(e.widget_id)
                                                 and (key_prefix is None or (e.user_key or "").startswith(key_prefix))
                                                 and (label is None or getattr(e.proto, "label", None) == label))
        if len(found) != 1:
            raise LookupError(f"{len(found)} widgets match kind={kind} key_prefix={key_prefix} label={label}")
        return found[0]

    def set_component_state(self, component_id: str, name: str, value: Any) -> None:
        """A components-v2 `setStateValue(name, value)`: merged into the state sent as JSON."""
        self._components.setdefault(component_id, {})[name] = value

    def click(self, button_id: str) -> None:
        """A button press, sent with the next request only."""
        self._triggers.append(WidgetState(id=button_id, trigger_value=True))


# -- streamlit-drawable-canvas 0.13 ------------------------------------------------

def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _points(strokes, size: int, per_segment: int = 1) -> list[list[tuple[float, float]]]:
    """Strokes in pixels, each segment cut into `per_segment` pieces (a mouse moves in small steps)."""
    out = []
    for pts in strokes:
        xy = [(pts[0][0] * size, pts[0][1] * size)]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            xy += [((x0 + (x1 - x0) * k / per_segment) * size, (y0 + (y1 - y0) * k / per_segment) * size)
                   for k in range(1, per_segment + 1)]
        out.append(xy)
    return out


def canvas_png(strokes: list[list[tuple[float, float]]], size: int = 280, width: int = 18) -> bytes:
    """The PNG the canvas sends with return_image_data=True: white strokes on black, RGBA, with
    antialiased edges like the browser's (nearly as large: 3-5 KB for a digit, Chromium's 5-7 KB). Strokes are
    polylines in fractions of the canvas size."""
    from PIL import Image, ImageDraw

    scale = 4  # drawn 4x larger, then shrunk: antialiasing
    img = Image.new("RGBA", (size * scale, size * scale), (0, 0, 0, 255))
    draw = ImageDraw.Draw(img)
    w = width * scale
    for xy in _points(strokes, size * scale):
        draw.line(xy, fill=(255, 255, 255, 255), width=w, joint="curve")
        for x, y in (xy[0], xy[-1]):  # round caps, as the canvas draws them
            draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=(255, 255, 255, 255))
    buf = io.BytesIO()
    img.resize((size, size), Image.Resampling.BOX).save(buf, format="PNG", compress_level=1)  # fast, as browsers
    return buf.getvalue()


def fabric_paths(strokes: list[list[tuple[float, float]]], size: int = 280, width: int = 18) -> dict:
    """A stand-in for the canvas's fabric.js JSON (the `raw` half of its state): one path object
    per stroke, with the fields fabric 7 sends and about as many points as a mouse stroke.
    The app does not read it; it is sent for its size."""
    objects = []
    for pts in _points(strokes, size, per_segment=10):
        xy = [(round(x, 3), round(y, 3)) for x, y in pts]
        path = [["M", *xy[0]]] + [["Q", *a, round((a[0] + b[0]) / 2, 3), round((a[1] + b[1]) / 2, 3)]
                                  for a, b in zip(xy, xy[1:])] + [["L", *xy[-1]]]
        xs, ys = [p[0] for p in xy], [p[1] for p in xy]
        objects.append({
            "lockMovementX": False, "lockMovementY": False, "lockRotation": False, "lockScalingX": False,
            "lockScalingY": False, "lockSkewingX": False, "lockSkewingY": False, "lockScalingFlip": False,
            "type": "Path", "version": "7.4.0", "originX": "center", "originY": "center",
            "left": round((min(xs) + max(xs)) / 2, 4), "top": round((min(ys) + max(ys)) / 2, 4),
            "width": round(max(xs) - min(xs), 4), "height": round(max(ys) - min(ys), 4), "fill": None,
            "stroke": "#FFFFFF", "strokeWidth": width, "strokeDashArray": None, "strokeLineCap": "round",
            "strokeDashOffset": 0, "strokeLineJoin": "round", "strokeUniform": False, "strokeMiterLimit": 10,
            "scaleX": 1, "scaleY": 1, "angle": 0, "flipX": False, "flipY": False, "opacity": 1, "shadow": None,
            "visible": True, "backgroundColor": "", "fillRule": "nonzero", "paintFirst": "fill",
            "globalCompositeOperation": "source-over", "skewX": 0, "skewY": 0, "path": path})
    return {"version": "7.4.0", "objects": objects, "background": "#000000"}


def canvas_drawing(strokes: list[list[tuple[float, float]]]) -> dict:
    """The value of the canvas's "drawing" state after these strokes (raw JSON + PNG data URL)."""
    return {"raw": fabric_paths(strokes), "data": png_data_url(canvas_png(strokes))}


# -- LeNet Lab's own Draw canvas (lenet_app/draw_canvas.py) ----------------------------

def live_image(strokes: list[list[tuple[float, float]]]) -> str:
    """What the Draw canvas sends on pen-up from a browser that runs the model: the 28x28 image it
    made (as digit_from_rgba makes it), float32, base64: 4,184 characters."""
    import numpy as np
    from PIL import Image

    from lenet_core.preprocess import digit_from_rgba

    rgba = np.asarray(Image.open(io.BytesIO(canvas_png(strokes))).convert("RGBA"))
    return base64.b64encode(np.asarray(digit_from_rgba(rgba), dtype="<f4").tobytes()).decode("ascii")

