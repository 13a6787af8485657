"""The Draw page's canvas: LeNet Lab's own component (static/draw_canvas.js), which runs the picked
model in the browser (onnxruntime-web, the model exported to ONNX by lenet_core/export.py and both
served by server.py) and draws the prediction, the probability bars and the first two conv layers'
maps while the pen moves. Python hears of a drawing only when a stroke ends: the 28x28 image the
browser made, or, where the browser cannot run the model, the canvas as a PNG (the page then
answers from the server, as it did before the component)."""
from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.colors
import streamlit as st

from lenet_core.preprocess import SIZE, digit_from_rgba, png_data_url_to_rgba

from .maps import DIVERGING, SEQUENTIAL
from .models import ModelEntry
from .onnx_models import checkpoint_version, warm
from .routes import ONNX_URL, ORT_URL

STATIC = Path(__file__).parent / "static"
KEY = "draw_pad"
# What a browser may send per stroke: 28x28 float32 (3,136 bytes, 4,184 in base64), or a 280x280
# canvas as a PNG (a scribbled one is about 30 KB); anything larger is refused before decoding.
IMAGE_B64_CHARS = 4 * math.ceil(SIZE * SIZE * 4 / 3)
MAX_PNG_CHARS = 1_500_000
MAX_CANVAS_SIDE = 1024
MAPS_CAPTION = ("Each square is one channel's feature map after the activation function (one colour scale per "
                "layer): bright where that channel's filter matches the drawing. More on the Activations page.")

HTML = f"""
<div class="ld ld-empty" data-live="loading" data-updates="0" data-strokes="0">
  <div class="ld-row">
    <div class="ld-pad">
      <canvas class="ld-canvas" width="280" height="280" role="img" aria-label="Drawing canvas"></canvas>
      <button class="ld-clear" type="button">Clear</button>
      <div class="ld-note" hidden></div>
    </div>
    <div class="ld-sees">
      <div class="ld-hint"></div>
      <div class="ld-seen">
        <div class="ld-label">What the model sees (28x28)</div>
        <canvas class="ld-digit" width="28" height="28"></canvas>
        <div class="ld-label">Prediction</div>
        <div class="ld-prediction"></div>
        <div class="ld-sure"></div>
      </div>
    </div>
    <div class="ld-bars-box">
      <div class="ld-label">Probability of every class</div>
      <div class="ld-bars"></div>
    </div>
  </div>
  <div class="ld-maps-box">
    <div class="ld-maps-head">What the first conv layers see</div>
    <div class="ld-caption">{MAPS_CAPTION}</div>
    <div class="ld-maps">
      <div class="ld-layer" data-layer="1"><div class="ld-layer-title"></div><div class="ld-grid"></div></div>
      <div class="ld-layer" data-layer="2"><div class="ld-layer-title"></div><div class="ld-grid"></div></div>
    </div>
  </div>
</div>
"""

_component = st.components.v2.component(
    "lenet_draw_canvas", html=HTML, css=(STATIC / "draw_canvas.css").read_text(),
    # The preprocessing first: the canvas's module calls digitFromRGBA on every move.
    js=(STATIC / "draw_preprocess.js").read_text() + "\n" + (STATIC / "draw_canvas.js").read_text())


def _rgb_scale(name: str) -> list[list[float]]:
    """A Plotly colour scale as [[position, r, g, b], ...], the form the component interpolates."""
    scale = plotly.colors.get_colorscale(name)
    out = []
    for position, colour in scale:
        rgb = plotly.colors.hex_to_rgb(colour) if colour.startswith("#") else plotly.colors.unlabel_rgb(colour)
        out.append([float(position), *map(float, rgb)])
    return out


COLORS = {"sequential": _rgb_scale(SEQUENTIAL), "diverging": _rgb_scale(DIVERGING)}


def model_url(entry: ModelEntry | None) -> str | None:
    """Where the browser fetches this model as ONNX, naming its checkpoint's version (so a retrained
    run is fetched anew and an unchanged one comes from the browser's cache)."""
    if entry is None or entry.path is None:
        return None
    version = checkpoint_version(entry.path)
    if version is None:
        return None
    source, name = ("shipped", entry.path.name) if entry.source == "shipped" else ("run", entry.key.split(":", 1)[1])
    return "/" + ONNX_URL.format(source=source, name=name) + f"?v={version}"


@dataclass
class Drawing:
    image: np.ndarray  # 28x28 float32 in [0, 1], ink = 1
    live: bool         # the browser has shown the model's answer for it
    number: int        # strokes the canvas has sent


def drawing_from(value) -> Drawing | None:
    """The drawing in the component's state, or None for an empty canvas; ValueError, in words, for
    anything a browser of this app would not send."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("the canvas sent something that is not a drawing")
    number = value.get("n")
    number = number if isinstance(number, int) and not isinstance(number, bool) and number >= 0 else 0
    if value.get("live") is True:
        text = value.get("image")
        if not isinstance(text, str) or len(text) > IMAGE_B64_CHARS:
            raise ValueError("the canvas sent an image of the wrong size")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the canvas sent an image that is not base64") from None
        if len(raw) != SIZE * SIZE * 4:
            raise ValueError(f"the canvas sent {len(raw)} bytes, not a 28x28 image")
        image = np.frombuffer(raw, dtype="<f4").reshape(SIZE, SIZE).astype(np.float32)
        if not np.isfinite(image).all():
            raise ValueError("the canvas sent an image with values that are not numbers")
        return Drawing(np.clip(image, 0.0, 1.0), True, number)
    url = value.get("png")
    if not isinstance(url, str) or len(url) > MAX_PNG_CHARS:
        raise ValueError("the canvas sent no image, or one too large")
    rgba = png_data_url_to_rgba(url)
    if max(rgba.shape[:2]) > MAX_CANVAS_SIDE:
        raise ValueError(f"the canvas sent a {rgba.shape[1]}x{rgba.shape[0]} image, larger than a canvas")
    image = digit_from_rgba(rgba)
    return None if image is None else Drawing(image, False, number)


def show(entry: ModelEntry | None, hint: str, serving: bool) -> Drawing | None:
    """The canvas, live where this server's routes can give the browser its model; returns the
    drawing of the last finished stroke (None while the canvas is empty)."""
    url = model_url(entry) if serving else None
    if url is not None:
        warm(entry.path)  # export while the browser loads the runtime
    classes = list(entry.classes) if entry is not None else [str(i) for i in range(10)]
    result = _component(key=KEY, on_drawing_change=lambda: None, default={"drawing": None},
                        data={"model_url": url, "ort_url": "/" + ORT_URL, "classes": classes, "hint": hint,
                              "colors": COLORS,
                              "why_not": None if serving else "this page runs without the app's server"})
    return drawing_from(result.drawing)
