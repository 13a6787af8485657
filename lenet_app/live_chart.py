"""Plotly charts that the browser updates in place while a run streams.

`st.plotly_chart` makes a chart whose figure changed a new element: at every redraw
the browser discards the old chart and builds a new one from nothing (SVG layers,
axes, mode bar, event handlers). A live chart redrawn twice a second pays that
twice a second, and on a small machine the CPU it takes comes out of training.

`live_plotly_chart` draws the same Plotly figure with a small custom component
(Streamlit components v2) that keeps one chart per key and hands each new figure
to plotly.js in place: where only the points of its lines changed (a growing curve),
`Plotly.animate` without a redraw moves them and leaves the axes, legend and title
alone; otherwise `Plotly.react` redraws the chart. Both keep a zoom. On the 2-core
build machine the Train page's panel took Chromium 0.047-0.054 cores with the first
and 0.071-0.085 with `Plotly.react` alone (alternating windows of
benchmarks/streaming_cost.py's feed page). The browser loads plotly.js
once, from the Plotly Python package's own copy, served as an app static file
(`static/plotly.min.js` beside the app's main script, copied there by
`ensure_plotly_js`; the folder is git-ignored). Where that cannot work (static
serving off because Streamlit was started outside the project folder, or a
folder it cannot write), the chart falls back to `st.plotly_chart`.

`live_panel` is the Train page's panel for a run that is training: a progress bar
and the three curves, which it reads from a file that the server rewrites while
the run trains (lenet_app.live_feed), so that no script run is needed to redraw it.
"""
from __future__ import annotations

import contextlib
import functools
import json
import re
import zlib
import shutil
from pathlib import Path

import plotly.io
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from lenet_core.checkpoint import atomic_write

PLOTLY_JS = "plotly.min.js"
STATIC_URL = "app/static/"  # where Streamlit serves the static folder, relative to the page
CHART_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}

# Streamlit's light theme, as its own Plotly template draws it, so live charts match the
# other charts of the app.
FONT = {"family": '"Source Sans", "Source Sans Pro", sans-serif', "size": 14, "color": "rgb(49, 51, 63)"}
COLORWAY = ["#0068c9", "#83c9ff", "#ff2b2b", "#ffabab", "#29b09d", "#7defa1", "#ff8700", "#ffd16a",
            "#6d3fc0", "#d5dae5"]
AXIS_KEY = re.compile(r"[xy]axis\d*")
TITLE = {"x": 0, "xanchor": "left", "xref": "paper", "font": {"size": 16, "weight": 600}}
AXIS = {"gridcolor": "#e6eaf1", "zeroline": False, "linecolor": "#e6eaf1", "tickfont": {"color": "#808495"},
        "title": {"font": {"color": "#808495"}}}

# Loads plotly.js once per page, for every live chart and the panel.
_LOAD_PLOTLY_JS = r"""
function plotly(src) {
  if (!window.__lenetPlotly) {
    window.__lenetPlotly = new Promise((resolve, reject) => {
      if (window.Plotly) return resolve(window.Plotly);
      const script = document.createElement("script");
      script.src = src;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => { window.__lenetPlotly = null; reject(new Error(src)); };
      document.head.appendChild(script);
    });
  }
  return window.__lenetPlotly;
}

const drawnShapes = new WeakMap();  // chart node -> its figure as last drawn, less the points

// Whether Plotly.animate can move `figure`'s points in `node` without redrawing the rest:
// line and marker traces only, axes with fixed ranges (animate does not autorange them again),
// and every trace already drawn with points (an empty one has no legend entry to show yet).
// The caller has checked that the traces are those last drawn, less their points.
function onlyPointsMove(node, figure) {
  const axes = Object.keys(figure.layout).filter((k) => /^[xy]axis\d*$/.test(k));
  return figure.data.every((t) => !t.type || t.type === "scatter")
    && axes.length > 0 && axes.every((k) => Array.isArray(figure.layout[k].range))
    && Array.isArray(node.data) && node.data.every((t) => t.x && t.x.length > 0);
}

// Draw `figure` in `node`. Where only the traces' points changed since the last draw (same
// layout, same traces otherwise), Plotly.animate without a redraw moves the lines and leaves
// axes, legend and title as they are; Plotly.react lays out and redraws the whole chart, which
// costs the browser several times more at every update of a streaming curve.
async function draw(Plotly, node, figure, config) {
  const shape = JSON.stringify({ layout: figure.layout, traces: figure.data.map(({ x, y, ...rest }) => rest) });
  if (drawnShapes.get(node) === shape && onlyPointsMove(node, figure)) {
    try {
      await Plotly.animate(node, { data: figure.data, traces: figure.data.map((_, i) => i) },
                           { transition: { duration: 0 }, frame: { duration: 0, redraw: false }, mode: "immediate" });
      return;
    } catch (err) {
      // e.g. an animation interrupted by another draw: redraw the whole chart below
    }
  }
  drawnShapes.delete(node);
  await Plotly.react(node, figure.data, figure.layout, config);
  drawnShapes.set(node, shape);
}
"""

_JS = _LOAD_PLOTLY_JS + r"""
const charts = new WeakMap();

export default function (component) {
  const { data, parentElement } = component;
  const root = parentElement.querySelector(".lenet-live-chart");
  let chart = charts.get(parentElement);
  if (!chart) {
    chart = { latest: null, busy: false };
    charts.set(parentElement, chart);
  }
  chart.latest = data;
  if (chart.busy) return;  // the newest figure is drawn when the current draw ends
  chart.busy = true;
  plotly(data.src).then(async (Plotly) => {
    while (chart.latest) {
      const d = chart.latest;
      chart.latest = null;
      if (d.figure === chart.drawn) continue;  // e.g. the epoch charts between two epochs
      chart.drawn = d.figure;
      const figure = JSON.parse(d.figure);
      await draw(Plotly, root, figure, d.config);
    }
  }).catch((err) => {
    root.textContent = "The live chart could not load plotly.js (" + err.message + "). Restart the app.";
  }).finally(() => { chart.busy = false; });
  return () => {};
}
"""

_component = st.components.v2.component(
    "lenet_live_plotly_chart",
    html='<div class="lenet-live-chart" style="width: 100%"></div>',
    js=_JS,
    isolate_styles=False,  # plotly.js puts its styles in the page's head
)

_PANEL_JS = _LOAD_PLOTLY_JS + r"""
const panels = new WeakMap();

// Draw the newest payload; one draw at a time, skipping payloads that a newer one replaced.
async function drain(panel) {
  if (panel.drawing) return;
  panel.drawing = true;
  try {
    while (panel.latest) {
      const payload = panel.latest;
      panel.latest = null;
      const progress = panel.root.querySelector(".lenet-progress");
      progress.style.display = payload.progress === null ? "none" : "";
      if (payload.progress !== null) {
        const text = progress.querySelector(".lenet-progress-text");
        if (text.textContent !== payload.text) text.textContent = payload.text;
        progress.querySelector(".lenet-progress-fill").style.width = (100 * payload.progress).toFixed(2) + "%";
      }
      const Plotly = await plotly(panel.data.src);
      for (const [name, figure] of Object.entries(payload.figures)) {
        if (panel.drawn[name] === payload.versions[name]) continue;  // e.g. the epoch charts mid-epoch
        panel.drawn[name] = payload.versions[name];
        const node = panel.root.querySelector('[data-chart="' + name + '"]');
        await draw(Plotly, node, figure, panel.data.config);
      }
      if (payload.ended) finish(panel);
    }
  } catch (err) {
    panel.root.querySelector(".lenet-progress-text").textContent =
      "The live panel could not draw (" + err.message + "). Reload the page.";
  } finally {
    panel.drawing = false;
  }
}

// The run has ended (or its feed is gone): stop reading and ask Streamlit for one rerun,
// which draws the final state.
function finish(panel) {
  if (panel.ended) return;
  panel.ended = true;
  clearInterval(panel.timer);
  panel.timer = null;
  panel.setTriggerValue("ended", true);
}

async function poll(panel) {
  if (panel.fetching || panel.ended) return;
  panel.fetching = true;
  try {
    const response = await fetch(panel.data.feed + "?t=" + Date.now(), { cache: "no-store" });
    if (response.status === 404) return finish(panel);  // the feed is gone: its run ended a while ago
    if (!response.ok) throw new Error("HTTP " + response.status);
    panel.latest = await response.json();
    panel.lastRead = Date.now();
    drain(panel);
  } catch (err) {
    // A read that met the file being replaced fails now and then: the next one will do.
    // Ten seconds without a good read (e.g. the server is restarting): let the page redraw.
    if (Date.now() - panel.lastRead >= 10000) finish(panel);
  } finally {
    panel.fetching = false;
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let panel = panels.get(parentElement);
  if (!panel || panel.data.feed !== data.feed) {
    if (panel) clearInterval(panel.timer);
    panel = { root: parentElement.querySelector(".lenet-live-panel"), drawn: {}, latest: null,
              drawing: false, fetching: false, lastRead: Date.now(), ended: false, timer: null };
    panels.set(parentElement, panel);
  }
  if (data.feed && panel.ended) {
    // The rerun this panel asked for found the run still training (its feed had gone missing
    // for a moment): read the feed again.
    panel.ended = false;
    panel.lastRead = Date.now();
  }
  panel.data = data;
  panel.setTriggerValue = setTriggerValue;
  panel.latest = JSON.parse(data.payload);  // the state when the page was drawn, until the first read
  drain(panel);
  if (data.feed && !panel.timer && !panel.ended) panel.timer = setInterval(() => poll(panel), data.every_ms);
  return () => {
    clearInterval(panel.timer);
    panel.timer = null;
    panel.ended = true;
    panels.delete(parentElement);
  };
}
"""

# Laid out like the Streamlit elements it replaces: st.progress above the loss chart,
# then the two epoch charts side by side as in st.columns(2).
_PANEL_HTML = """
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
</div>
"""

_PANEL_CSS = """
.lenet-live-panel { display: flex; flex-direction: column; gap: 1rem; width: 100%; }
.lenet-progress-text { font-size: 0.875rem; line-height: 1.6; margin-bottom: 0.25rem;
  color: var(--st-text-color, rgb(49, 51, 63)); font-family: var(--st-font, "Source Sans", sans-serif); }
.lenet-progress-track { height: 0.5rem; border-radius: 0.5rem; overflow: hidden;
  background: var(--st-secondary-background-color, #f0f2f6); }
.lenet-progress-fill { height: 100%; width: 0; background: var(--st-primary-color, #ff4b4b); }
.lenet-chart { width: 100%; min-width: 0; }
/* Side by side when each gets 300 pixels, else one under the other (a 1024-pixel window). */
.lenet-chart-row { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 1rem; }
"""

_panel = st.components.v2.component(
    "lenet_live_panel",
    html=_PANEL_HTML,
    css=_PANEL_CSS,
    js=_PANEL_JS,
    isolate_styles=False,  # plotly.js puts its styles in the page's head
)


def ensure_plotly_js(static_dir: Path) -> Path:
    """Copy the installed Plotly package's plotly.min.js into `static_dir`, unless the same
    file is already there; raises OSError when it cannot."""
    source = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    target = static_dir / PLOTLY_JS
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        with source.open("rb") as src:
            atomic_write(target, lambda f: shutil.copyfileobj(src, f))
    return target


@functools.lru_cache(maxsize=8)
def _served_plotly_js(static: Path) -> bool:
    try:
        ensure_plotly_js(static)
        return True
    except OSError:
        return False


def static_dir() -> Path | None:
    """The folder this app serves static files from (`/app/static/`), or None when it serves none."""
    ctx = get_script_run_ctx()
    if ctx is None or not st.get_option("server.enableStaticServing"):
        return None
    return Path(ctx.main_script_path).resolve().parent / "static"


def available() -> bool:
    """Whether this app run can serve plotly.js to live charts (else they fall back)."""
    folder = static_dir()
    return folder is not None and _served_plotly_js(folder)


def themed(figure: dict) -> dict:
    """`figure` with Streamlit's fonts, colours and grid, unless it sets its own."""
    layout = dict(figure.get("layout", {}))
    layout.setdefault("font", FONT)
    layout.setdefault("colorway", COLORWAY)
    layout.setdefault("paper_bgcolor", "rgba(0,0,0,0)")
    layout.setdefault("plot_bgcolor", "rgba(0,0,0,0)")
    layout.setdefault("autosize", True)
    for axis in dict.fromkeys(["xaxis", "yaxis", *(k for k in layout if AXIS_KEY.fullmatch(k))]):  # xaxis2 too
        layout[axis] = {**AXIS, **layout.get(axis, {})}
    if "title" in layout:  # bold and on the left, as Streamlit draws titles, clear of a legend on the right
        layout["title"] = {**TITLE, **layout["title"]}
    return {**figure, "layout": layout}


def figure_json(figure: dict, name: str) -> str:
    """`figure` themed, as JSON for plotly.js (arrays as lists, NaN as null). Its `uirevision`
    keeps a zoom or a hidden trace across redraws."""
    figure = themed(figure)
    figure["layout"].setdefault("uirevision", name)
    return plotly.io.to_json(figure, validate=False)


def live_plotly_chart(figure: dict, name: str, dg=None) -> None:
    """Draw `figure` (a Plotly spec as a dict) as the live chart `name`, unique on the page,
    in `dg` or the main area."""
    if not available():
        (dg or st).plotly_chart(figure, theme="streamlit")
        return
    data = {"figure": figure_json(figure, name), "src": STATIC_URL + PLOTLY_JS, "config": CHART_CONFIG}
    with dg if dg is not None else contextlib.nullcontext():
        _component(key=f"lenet-live-{name}", data=data)


def live_panel(payload: str, feed: str | None = None, every_s: float = 0.5) -> None:
    """The Train page's panel: a progress bar over the loss chart, and the two epoch charts
    side by side. `payload` is what to draw, as `panel_payload` makes it. With `feed` (a file
    under the app's static folder, rewritten by lenet_app.live_feed while a run trains) the
    browser reads the feed every `every_s` seconds and redraws what changed, and once the
    feed says the run has ended it reruns the page. One panel per page; needs `available()`.
    The browser keeps the panel's charts from one page run to the next and updates them."""
    _panel(key="lenet-live-panel", on_ended_change=lambda: None,
           data={"feed": STATIC_URL + feed if feed else None, "payload": payload,
                 "src": STATIC_URL + PLOTLY_JS, "config": CHART_CONFIG, "every_ms": round(every_s * 1000)})


def panel_payload(figures: dict[str, dict], progress: float | None = None, text: str = "",
                  ended: bool = False) -> str:
    """JSON for `live_panel`: its charts by name ("loss-per-step", "loss-per-epoch",
    "val-accuracy"), each with a version that changes only when the chart does, and the
    progress bar (none when `progress` is None); `ended` tells a live panel to stop."""
    charts = {name: figure_json(fig, name) for name, fig in figures.items()}
    versions = {name: zlib.crc32(chart.encode()) for name, chart in charts.items()}
    return (f'{{"ended": {json.dumps(ended)}, "progress": {json.dumps(progress)}, "text": {json.dumps(text)}, '
            f'"versions": {json.dumps(versions)}, "figures": {{'
            + ", ".join(f"{json.dumps(name)}: {chart}" for name, chart in charts.items()) + "}}")
