"""Plotly charts that the browser updates in place while a run streams.

`st.plotly_chart` makes a chart whose figure changed a new element: at every redraw
the browser discards the old chart and builds a new one from nothing (SVG layers,
axes, mode bar, event handlers). A live chart redrawn twice a second pays that
twice a second, and on a small machine the CPU it takes comes out of training.

`live_plotly_chart` draws the same Plotly figure with a small custom component
(Streamlit components v2) that keeps one chart per key and hands each new figure
to `Plotly.react`, which redraws only what changed. The browser loads plotly.js
once, from the Plotly Python package's own copy, served as an app static file
(`static/plotly.min.js` beside the app's main script, copied there by
`ensure_plotly_js`; the folder is git-ignored). Where that cannot work (static
serving off because Streamlit was started outside the project folder, or a
folder it cannot write), the chart falls back to `st.plotly_chart`.
"""
from __future__ import annotations

import contextlib
import functools
import shutil
from pathlib import Path

import plotly.io
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from lenet_core.checkpoint import atomic_write

PLOTLY_JS = "plotly.min.js"

# Streamlit's light theme, as its own Plotly template draws it, so live charts match the
# other charts of the app.
FONT = {"family": '"Source Sans", "Source Sans Pro", sans-serif', "size": 14, "color": "rgb(49, 51, 63)"}
COLORWAY = ["#0068c9", "#83c9ff", "#ff2b2b", "#ffabab", "#29b09d", "#7defa1", "#ff8700", "#ffd16a",
            "#6d3fc0", "#d5dae5"]
TITLE = {"x": 0, "xanchor": "left", "xref": "paper", "font": {"size": 16, "weight": 600}}
AXIS = {"gridcolor": "#e6eaf1", "zeroline": False, "linecolor": "#e6eaf1", "tickfont": {"color": "#808495"},
        "title": {"font": {"color": "#808495"}}}

_JS = r"""
const charts = new WeakMap();

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
      await Plotly.react(root, figure.data, figure.layout, d.config);
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
def _served_plotly_js(main_script: str) -> bool:
    try:
        ensure_plotly_js(Path(main_script).resolve().parent / "static")
        return True
    except OSError:
        return False


def available() -> bool:
    """Whether this app run can serve plotly.js to live charts (else they fall back)."""
    ctx = get_script_run_ctx()
    if ctx is None or not st.get_option("server.enableStaticServing"):
        return False
    return _served_plotly_js(ctx.main_script_path)


def themed(figure: dict) -> dict:
    """`figure` with Streamlit's fonts, colours and grid, unless it sets its own."""
    layout = dict(figure.get("layout", {}))
    layout.setdefault("font", FONT)
    layout.setdefault("colorway", COLORWAY)
    layout.setdefault("paper_bgcolor", "rgba(0,0,0,0)")
    layout.setdefault("plot_bgcolor", "rgba(0,0,0,0)")
    layout.setdefault("autosize", True)
    for axis in ("xaxis", "yaxis"):
        layout[axis] = {**AXIS, **layout.get(axis, {})}
    if "title" in layout:  # bold and on the left, as Streamlit draws titles, clear of a legend on the right
        layout["title"] = {**TITLE, **layout["title"]}
    return {**figure, "layout": layout}


def live_plotly_chart(figure: dict, name: str, dg=None) -> None:
    """Draw `figure` (a Plotly spec as a dict) as the live chart `name`, unique on the page,
    in `dg` or the main area. `uirevision` keeps a zoom or a hidden trace across redraws."""
    if not available():
        (dg or st).plotly_chart(figure, theme="streamlit")
        return
    figure = themed(figure)
    figure["layout"].setdefault("uirevision", name)
    data = {"figure": plotly.io.to_json(figure, validate=False),  # arrays as lists, NaN as null
            "src": f"app/static/{PLOTLY_JS}",
            "config": {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}}
    with dg if dg is not None else contextlib.nullcontext():
        _component(key=f"lenet-live-{name}", data=data)
