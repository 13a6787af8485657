"""The Draw page as a protocol client (st_client.Session) uses it: a student's tab.

The canvas (lenet_app/draw_canvas.py) runs the model in the browser and sends one message per
finished stroke: the 28x28 image it made ({"n", "live": True, "image"}); Clear sends an empty
drawing. The server's answer is its analysis of that drawing ("Which pixels made it say X",
probes), ending with the page's hidden last element (data-update N). Everything this relies on
in the page is in the constants below, so a changed layout needs edits here only. Widget ids
are found in each run's messages, never written down.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from st_client import Element, Request, Run, Session, live_image

PAGE = "draw"                               # URL path /draw
CANVAS_KEY_PREFIX = "draw_pad"              # the canvas component's key
CANVAS_COMPONENT = "lenet_draw_canvas"
CANVAS_STATE = "drawing"                    # the component's setStateValue("drawing", {n, live, image})
ANALYSIS = re.compile(r"Which pixels made it say (.+)$")   # the analysis's heading: the class
DONE = re.compile(r'class="draw-done" data-update="(\d+)"')  # the page's last element: the drawing's number
SERVER_TIME = re.compile(r'class="draw-done"[^>]*data-ms="(\d+)"')  # and the server's time for the run

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




def jittered(strokes, rng: random.Random, amount: float = 0.03):
    """The same digit as another hand draws it: each point moved a little."""
    return [[(min(0.95, max(0.05, x + rng.uniform(-amount, amount))),
              min(0.95, max(0.05, y + rng.uniform(-amount, amount)))) for x, y in pts] for pts in strokes]


@dataclass
class Answer:
    t: float            # when the page's last element, which follows the analysis, arrived
    update: int
    label: str          # the class the analysis explains: the prediction


class DrawTab:
    """A student's browser tab on the Draw page, over one protocol Session."""

    def __init__(self, session: Session):
        self.s = session
        self.last_update = 0  # the highest data-update this tab has seen
        self.strokes = 0      # strokes sent, as the canvas numbers them

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
        """The canvas after `strokes` (all of them so far), sent as the component does on pen-up."""
        return await self.send_drawing(live_image(strokes))

    async def send_drawing(self, image: str) -> Request:
        """`draw` with the image made beforehand (st_client.live_image)."""
        self.strokes += 1
        self.s.set_component_state(self.canvas().widget_id, CANVAS_STATE,
                                   {"n": self.strokes, "live": True, "image": image})
        return await self.s.rerun()

    async def clear(self, timeout: float | None = None) -> Run:
        """Press the canvas's Clear (an empty drawing) and wait for the page without analysis."""
        self.s.set_component_state(self.canvas().widget_id, CANVAS_STATE, None)
        return await self.s.wait_finished(await self.s.rerun(), timeout)

    def answer(self, request: Request) -> Answer | None:
        """The analysis from a run started after `request` (it has seen that drawing): its class,
        and the page's last element once it has arrived."""
        for run in self.s.runs[request.first_run:]:
            label = done = None
            for e in run.elements.values():
                body = getattr(e.proto, "body", "")
                if isinstance(body, str):
                    if label is None and (m := ANALYSIS.search(body)):
                        label = m.group(1).strip()
                    elif (m := DONE.search(body)) and label is not None:
                        done = (e.t, int(m.group(1)))
            if label is not None and done is not None:
                self.last_update = max(self.last_update, done[1])
                return Answer(done[0], done[1], label)
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
