"""The Train page's run panel: progress and the three curves of one run, drawn by a small component
(static/live_panel.js) that, while the run trains, reads the run's JSON from the server and redraws
the charts in place, with no script rerun (see the JS file for why). Pages that run without the
server around them (AppTest) get the same figures through st.plotly_chart."""
from __future__ import annotations

import functools
import json
import math
import os
import threading
import time
import zlib
from pathlib import Path

import plotly.graph_objects as go
import plotly.io
import streamlit as st

from lenet_core.runs import Run, RunInfo, queue

from . import curves
from .routes import LIVE_URL, PLOTLY_URL

STATIC = Path(__file__).parent / "static"
# How often a live panel reads its run (after a quick first point, see static/live_panel.js): each
# read and redraw is browser CPU that a training on the same machine loses. Every 2 s kept 0.943 of
# the CLI's speed against 0.913 every 1 s (browser 0.075 vs 0.092 cores; 4 runs each, side by side).
REFRESH_S = 2.0
# No mode bar: it covered the charts' titles and legends; a drag still zooms, a double-click resets.
CHART_CONFIG = {"displaylogo": False, "responsive": True, "displayModeBar": False}
# Streamlit's light theme, as its own Plotly template draws it, so the panel matches other charts.
FONT = {"family": '"Source Sans", "Source Sans Pro", sans-serif', "size": 14, "color": "rgb(49, 51, 63)"}
AXIS = {"gridcolor": "#e6eaf1", "zeroline": False, "linecolor": "#e6eaf1", "tickfont": {"color": "#808495"},
        "title": {"font": {"color": "#808495"}}}
TITLE = {"x": 0, "xanchor": "left", "xref": "paper", "font": {"size": 16, "weight": 600}}
HTML = """
<div class="lenet-live-panel">
  <div class="lenet-progress" data-testid="lenet-live-progress">
    <div class="lenet-progress-text"></div>
    <div class="lenet-progress-track"><div class="lenet-progress-fill"></div></div>
  </div>
  <div class="lenet-chart" data-chart="loss-per-step"></div>
  <div class="lenet-chart-row">
    <div class="lenet-chart" data-chart="loss-per-epoch"></div>
    <div class="lenet-chart" data-chart="val-accuracy"></div>
  </div>
  <div class="lenet-health-title">Inside the network: each layer, measured on the probe images every 50 steps</div>
  <div class="lenet-chart-row lenet-health">
    <div class="lenet-chart" data-chart="units"></div>
    <div class="lenet-chart" data-chart="spread"></div>
    <div class="lenet-chart" data-chart="gradients"></div>
  </div>
</div>
"""

_component = st.components.v2.component(
    "lenet_live_panel", html=HTML, css=(STATIC / "live_panel.css").read_text(),
    js=(STATIC / "live_panel.js").read_text(),
    isolate_styles=False)  # plotly.js puts its styles in the page's head


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    return (f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600
            else f"{seconds // 60}:{seconds % 60:02d}")


_queue_cache: tuple[float, list[RunInfo]] = (0.0, [])
_queue_lock = threading.Lock()


def queue_place(info: RunInfo) -> int:
    """This queued run's place in the queue (1: next), from the runs root read at most once a
    second, however many ask (every queued student's panel does)."""
    global _queue_cache
    with _queue_lock:
        if time.monotonic() - _queue_cache[0] > 1.0:
            _queue_cache = (time.monotonic(), queue(info.path.parent))
        waiting = _queue_cache[1]
    return next((i for i, q in enumerate(waiting, 1) if q.path == info.path), len(waiting) + 1)


def progress_text(info: RunInfo) -> str:
    if info.status == "queued":
        place = queue_place(info)
        return (f"Queued: {'next' if place == 1 else f'number {place}'} in line "
                f"({place - 1} run{'s' * (place != 2)} ahead of it). It starts when a worker is free.")
    parts = [f"Epoch {min(info.epochs_done + 1, info.config.epochs)} of {info.config.epochs}"
             if info.live else f"{info.epochs_done} of {info.config.epochs} epochs",
             f"step {info.steps_done:,}" + (f" of {info.total_steps:,}" if info.total_steps else "")]
    if info.status == "running":
        parts += [f"{info.samples_per_s:,.0f} samples/s" if info.samples_per_s else "measuring speed…",
                  f"ETA {duration(info.eta_s)}"]
    elif info.status == "paused":
        parts.append("paused")
    if info.device:
        parts.append(info.device)
    text = " · ".join(parts)
    if info.live and info.message:  # what to know while it trains, e.g. that it sits at chance for now
        text += f". {info.message}"
    return text


def themed(figure: dict, name: str) -> dict:
    layout = dict(figure.get("layout", {}))
    layout.setdefault("font", FONT)
    layout.setdefault("paper_bgcolor", "rgba(0,0,0,0)")
    layout.setdefault("plot_bgcolor", "rgba(0,0,0,0)")
    layout.setdefault("autosize", True)
    layout.setdefault("uirevision", name)  # a zoom or a hidden trace survives redraws
    for axis in [k for k in layout if k[:5] in ("xaxis", "yaxis")]:
        layout[axis] = {**AXIS, **layout[axis]}
    if "title" in layout:
        layout["title"] = {**TITLE, **layout["title"]}
    return {**figure, "layout": layout}


def figures_of(info: RunInfo, live: dict) -> dict[str, dict]:
    total = info.total_steps or info.steps_done
    figures = curves.run_figures(live, total, info.config.epochs, info.config.model.activation)
    return {name: themed(fig, name) for name, fig in figures.items()}


def _json(figures: dict[str, dict], ended: bool, status: str, progress: float | None, text: str) -> str:
    """What the panel draws, as JSON: its charts, each with a version that changes only with it,
    the progress line, and whether the run has ended."""
    charts = {name: plotly.io.to_json(fig, validate=False) for name, fig in figures.items()}
    versions = {name: zlib.crc32(chart.encode()) for name, chart in charts.items()}
    return (f'{{"ended": {json.dumps(ended)}, "status": {json.dumps(status)}, "progress": {json.dumps(progress)}, '
            f'"text": {json.dumps(text)}, "versions": {json.dumps(versions)}, "figures": {{'
            + ", ".join(f"{json.dumps(n)}: {c}" for n, c in charts.items()) + "}}")


def payload(info: RunInfo, live: dict) -> str:
    progress = None if info.status == "queued" or not info.total_steps else round(info.steps_done / info.total_steps, 5)
    return _json(figures_of(info, live), not info.live, info.status, progress, progress_text(info))


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


@functools.lru_cache(maxsize=64)
def _cached_payload(path: str, status_mtime: int, live_mtime: int, second: int) -> str | None:
    run = Run(path)
    return payload(run.info(), run.live())


def payload_for(run: Run, owner: str | None) -> str | None:
    """The panel JSON of `run` for the browser `owner`, or None where that browser may not see it.
    Built once per change of the run's files (and per second, for the queue place and ETA), however
    many pages watch the run."""
    try:
        info = run.info()
    except Exception:
        return None
    if info.owner is not None and info.owner != owner:
        return None
    return _cached_payload(str(run.path), _mtime(run.path / "status.json"), _mtime(run.path / "live.json"),
                           int(time.monotonic()))


def empty(epochs: int, activation: str, serving: bool) -> None:
    """The panel before any run: empty axes show where the curves will be, and the browser loads
    plotly.js now rather than after Start (the first Start took 2.8 s to its first point, later
    ones 1.2 s, before this)."""
    if not serving:
        return
    figures = {n: themed(f, n) for n, f in curves.run_figures({}, 0, epochs, activation).items()}
    data = _json(figures, True, "none", None, "")
    _component(key="lenet-live-panel", on_ended_change=lambda: None, on_status_change=lambda: None,
               data={"feed": None, "status": "none", "payload": data, "src": "/" + PLOTLY_URL,
                     "config": CHART_CONFIG, "every_ms": round(REFRESH_S * 1000)})


def show(info: RunInfo, serving: bool) -> None:
    """The panel of one run: read live from the server while it trains, or drawn as it stands."""
    live = Run(info.path).live()
    if serving:
        _component(key="lenet-live-panel", on_ended_change=lambda: None, on_status_change=lambda: None,
                   data={"feed": "/" + LIVE_URL.format(run_id=info.id) if info.live else None, "status": info.status,
                         "payload": payload(info, live), "src": "/" + PLOTLY_URL, "config": CHART_CONFIG,
                         "every_ms": round(REFRESH_S * 1000)})
        return
    st.caption(progress_text(info))
    # As Figures: st.plotly_chart refuses a dict with no traces, which the health charts are until
    # the run's first reading (a queued run).
    figures = {name: go.Figure(fig) for name, fig in figures_of(info, live).items()}
    st.plotly_chart(figures["loss-per-step"], theme="streamlit", key="panel-loss-per-step")
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures["loss-per-epoch"], theme="streamlit", key="panel-loss-per-epoch")
    c2.plotly_chart(figures["val-accuracy"], theme="streamlit", key="panel-val-accuracy")
    for col, name in zip(st.columns(3), ("units", "spread", "gradients")):
        col.plotly_chart(figures[name], theme="streamlit", key=f"panel-{name}")
