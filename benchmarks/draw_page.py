"""The Draw page as a protocol client (st_client.Session) uses it: a student's tab.

Everything this relies on in the page is in the constants below (the page's URL name, the
canvas's key, the Clear button, the prediction's markup), so a changed layout needs edits here
only. Widget ids are found in each run's messages, never written down.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from st_client import Element, Request, Run, Session, canvas_drawing

PAGE = "draw"                               # URL path /draw
CANVAS_KEY_PREFIX = "draw_canvas"           # st_canvas(key="draw_canvas" or "draw_canvas_<n>")
CANVAS_COMPONENT = "streamlit_drawable_canvas"
CANVAS_STATE = "drawing"                    # the component's setStateValue("drawing", {raw, data})
CLEAR_LABEL = "Clear"
PREDICTION = re.compile(r'class="draw-prediction"[^>]*?data-update="(\d+)"[^>]*>([^<]*)<')
SERVER_TIME = re.compile(r'class="draw-done"[^>]*data-ms="(\d+)"')  # the page's last element: its server time

# Digits as strokes (polylines in fractions of the canvas), each drawn one stroke at a time.
DIGITS: dict[str, list[list[tuple[float, float]]]] = {
    "1": [[(0.5, 0.15), (0.5, 0.85)]],
    "7": [[(0.3, 0.2), (0.72, 0.2), (0.45, 0.85)], [(0.4, 0.52), (0.66, 0.52)]],
    "4": [[(0.32, 0.15), (0.27, 0.6), (0.75, 0.6)], [(0.62, 0.3), (0.62, 0.86)]],
    "0": [[(0.5, 0.15), (0.3, 0.3), (0.28, 0.65), (0.5, 0.85), (0.7, 0.65), (0.72, 0.3), (0.5, 0.15)]],
    "2": [[(0.3, 0.3), (0.5, 0.15), (0.7, 0.3), (0.3, 0.8), (0.72, 0.8)]],
    "5": [[(0.35, 0.2), (0.33, 0.5), (0.65, 0.52), (0.62, 0.82), (0.3, 0.8)], [(0.35, 0.2), (0.7, 0.2)]],
    "3": [[(0.3, 0.2), (0.7, 0.25), (0.45, 0.5), (0.72, 0.7), (0.3, 0.82)]],
    "9": [[(0.65, 0.3), (0.5, 0.17), (0.33, 0.3), (0.5, 0.45), (0.65, 0.3)], [(0.65, 0.3), (0.6, 0.86)]],
}


def parse_prediction(body: str) -> tuple[int, str] | None:
    """(data-update, class name) from the prediction's markdown, or None for other markdown."""
    m = PREDICTION.search(body)
    return (int(m.group(1)), m.group(2).strip()) if m else None


def jittered(strokes, rng: random.Random, amount: float = 0.03):
    """The same digit as another hand draws it: each point moved a little."""
    return [[(min(0.95, max(0.05, x + rng.uniform(-amount, amount))),
              min(0.95, max(0.05, y + rng.uniform(-amount, amount)))) for x, y in pts] for pts in strokes]


@dataclass
class Answer:
    t: float            # when the prediction's markdown arrived
    update: int
    label: str


class DrawTab:
    """A student's browser tab on the Draw page, over one protocol Session."""

    def __init__(self, session: Session):
        self.s = session
        self.last_update = 0  # the highest data-update this tab has seen

    async def open(self, timeout: float | None = None) -> Run:
        run = await self.s.open_page(PAGE, timeout)
        self.canvas()  # fails early when the page has no canvas
        return run

    def canvas(self) -> Element:
        canvas = self.s.widget("bidi_component", key_prefix=CANVAS_KEY_PREFIX)
        if CANVAS_COMPONENT not in canvas.proto.component_name:
            raise LookupError(f"{canvas.user_key} is a {canvas.proto.component_name}, not the drawing canvas")
        return canvas

    async def draw(self, strokes) -> Request:
        """The canvas after `strokes` (all of them so far), sent as the component does on mouse-up."""
        return await self.send_drawing(canvas_drawing(strokes))

    async def send_drawing(self, drawing: dict) -> Request:
        """`draw` with the drawing made beforehand (st_client.canvas_drawing): no PNG encoding now."""
        self.s.set_component_state(self.canvas().widget_id, CANVAS_STATE, drawing)
        return await self.s.rerun()

    async def clear(self, timeout: float | None = None) -> Run:
        """Press Clear and wait for the new, empty canvas."""
        old = self.canvas().widget_id
        self.s.click(self.s.widget("button", label=CLEAR_LABEL).widget_id)
        run = await self.s.wait_finished(await self.s.rerun(), timeout)
        if self.canvas().widget_id == old:
            raise LookupError("Clear gave no new canvas")
        return run

    def answer(self, request: Request) -> Answer | None:
        """The first prediction from a run started after `request` (it has seen that drawing)."""
        for run in self.s.runs[request.first_run:]:
            for e in run.elements.values():
                if e.kind == "markdown" and (p := parse_prediction(e.proto.body)):
                    self.last_update = max(self.last_update, p[0])
                    return Answer(e.t, *p)
        return None

    @staticmethod
    def server_ms(run: Run) -> int | None:
        """The page's own time for a run, from its caption."""
        for e in run.elements.values():
            if e.kind in ("markdown", "html") and (m := SERVER_TIME.search(e.proto.body)):
                return int(m.group(1))
        return None

    async def wait_answer(self, request: Request, timeout: float | None = None) -> Answer:
        return await self.s.wait_until(lambda: self.answer(request), timeout)
