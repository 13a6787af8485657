"""Plotly figures for the Draw and Activations pages: probability bars, feature-map grids, filters.

A grid of maps is one heatmap trace, the maps tiled into one array with NaN gaps, rather than
`px.imshow(facet_col=...)` or `make_subplots`: for 16 maps that is ~3 ms to build and serialise
against ~65 ms and ~30 ms (measured on the build machine), and the Draw page rebuilds two grids
per stroke.
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import plotly.graph_objects as go
import torch

from lenet_core.activations import activations, conv_filters, conv_stages

STAGES = ("pre-activation", "post-activation", "pooled")
SEQUENTIAL = "Viridis"
DIVERGING = "RdBu_r"  # red positive, blue negative, white at 0
HIGHLIGHT, MUTED = "#ff4b4b", "#8c96a3"
FONT = 15  # readable on a projector


# -- what to draw ---------------------------------------------------------------

def conv_layers(model) -> list[int]:
    """1-based indices of the model's conv layers (1 to 3, whatever the settings were)."""
    return list(range(1, len(model.config.conv_channels) + 1))


_worker: ThreadPoolExecutor | None = None
_worker_lock = threading.Lock()


def _single_threaded() -> ThreadPoolExecutor:
    """A thread that runs torch with one intra-op thread, leaving every other thread's setting alone.

    For one 28x28 image, torch's default two OpenMP threads gain nothing, and when the other core is
    busy (a training job, another user) each parallel region waits for it: a forward pass that takes
    0.4 ms took 70 ms median and 160 ms p95 on the shared 2-core build machine; in this thread, 0.4
    and 2.4 ms. torch.set_num_threads sets the calling thread's OpenMP count and the default for
    threads that start later, so the default is put back at once (a window of microseconds, once)."""
    global _worker
    with _worker_lock:
        if _worker is None:
            default = torch.get_num_threads()

            def one_thread():
                torch.get_num_threads()  # take this thread's own setting first, then change it
                torch.set_num_threads(1)

            _worker = ThreadPoolExecutor(1, thread_name_prefix="lenet-inference", initializer=one_thread)
            _worker.submit(int).result()
            torch.set_num_threads(default)
    return _worker


def _forward(model, x):
    acts = activations(model, x)
    return acts, torch.softmax(acts["output"].float(), dim=1).numpy()


def forward(model, x: torch.Tensor):
    """One pass: every layer's output and the class probabilities (N, classes) as numpy."""
    return _single_threaded().submit(_forward, model, x).result()


def stage_maps(acts, layer: int, stage: str) -> np.ndarray:
    """Conv `layer`'s maps at `stage` as (C, H, W) float32, averaged over the batch."""
    name = conv_stages(None, layer)[stage]
    return acts[name].float().mean(dim=0).numpy()


def filter_summary(model, layer: int) -> tuple[np.ndarray, str]:
    """(C_out, k, k) kernels to show beside conv `layer`'s maps, and a sentence saying what they are."""
    w = conv_filters(model, layer).float()
    c_out, c_in, k, _ = w.shape
    if c_in == 1:
        return w[:, 0].numpy(), f"Above each map: its {k}x{k} filter (the weights it slides over the image)."
    return w.mean(dim=1).numpy(), (
        f"Above each map: the mean of its filter's {c_in} kernels ({k}x{k}, one per input channel), "
        f"a rough summary of the pattern it looks for; each filter really has {c_in}x{k}x{k} weights.")


def diverging_for(stage: str, maps: np.ndarray) -> bool:
    """Diverging (centred at 0) for values of both signs: pre-activations, tanh, differences."""
    return stage == "pre-activation" or float(np.min(maps)) < 0


def upscale(img: np.ndarray, factor: int = 5) -> np.ndarray:
    """Nearest-neighbour enlargement, so a 28x28 image stays crisp in st.image."""
    img = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    return np.kron(img, np.ones((factor, factor), np.float32))


# -- figures --------------------------------------------------------------------

def probability_bars(probs: np.ndarray, classes, height: int = 330) -> go.Figure:
    """Horizontal bars, one per class, the most likely one highlighted."""
    probs = np.asarray(probs, dtype=np.float64).ravel()
    best = int(probs.argmax())
    bar = dict(type="bar", x=probs.tolist(), y=[str(c) for c in classes], orientation="h",
               marker=dict(color=[HIGHLIGHT if i == best else MUTED for i in range(len(probs))]),
               text=[f"{p:.0%}" for p in probs], textposition="outside", cliponaxis=False,
               hovertemplate="%{y}: %{x:.1%}<extra></extra>")
    layout = dict(height=height, margin=dict(l=0, r=40, t=10, b=30), font=dict(size=FONT), bargap=0.25,
                  xaxis=dict(range=[0, 1], tickformat=".0%", fixedrange=True),
                  yaxis=dict(autorange="reversed", type="category", fixedrange=True, ticksuffix="  ",
                             tickfont=dict(size=FONT + 2)),  # the class names: Streamlit's theme draws them tiny
                  showlegend=False)
    return go.Figure(dict(data=[bar], layout=layout))


def grid_shape(c: int, max_cols: int = 8) -> tuple[int, int]:
    """(rows, cols) for c maps: as few rows as max_cols allows, then as few columns as those rows need."""
    rows = math.ceil(c / max_cols)
    return rows, math.ceil(c / rows)


def _tile(blocks: np.ndarray, xs: list[float], ys: list[float], pixel: float):
    """Lay blocks (C, h, w) out in one z matrix: block i's top-left corner at (xs[col], ys[row]) in
    data units, pixels `pixel` wide. Gaps are NaN rows/columns placed just outside each block (so
    Plotly, which puts cell edges halfway between centres, keeps every pixel square). Needs gaps of
    at least 2 pixels. Returns x centres, y centres, z, and the block index of every cell (NaN in gaps)."""
    c, h, w = blocks.shape

    def axis(starts, n):
        centres, owner = [], []
        for k, s0 in enumerate(starts):
            if k:  # the NaN cells that close the previous block and open this one
                centres += [centres[-1] + pixel, s0 - pixel / 2]
                owner += [-1, -1]
            centres += [s0 + (j + 0.5) * pixel for j in range(n)]
            owner += [k] * n
        return np.array(centres), np.array(owner)

    x, col_of = axis(xs, w)
    y, row_of = axis(ys, h)
    z = np.full((len(y), len(x)), np.nan, np.float32)
    which = np.full(z.shape, np.nan, np.float32)
    ncols = len(xs)
    for i in range(c):
        r, col = divmod(i, ncols)
        rr, cc = np.flatnonzero(row_of == r), np.flatnonzero(col_of == col)
        z[rr[0]:rr[-1] + 1, cc[0]:cc[-1] + 1] = blocks[i]
        which[rr[0]:rr[-1] + 1, cc[0]:cc[-1] + 1] = i
    return x, y, z, which


def _limits(a: np.ndarray, diverging: bool) -> tuple[float, float]:
    if diverging:
        m = float(np.abs(a).max()) or 1.0
        return -m, m
    lo, hi = float(a.min()), float(a.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _normalise_each(blocks: np.ndarray, diverging: bool) -> np.ndarray:
    """Each block scaled to [0, 1] (or [-1, 1] around 0 when diverging), for one colour range per map."""
    flat = blocks.reshape(len(blocks), -1)
    if diverging:
        scale = np.abs(flat).max(axis=1)
        return blocks / np.where(scale > 0, scale, 1.0)[:, None, None]
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (blocks - lo[:, None, None]) / span[:, None, None]


def map_grid(maps: np.ndarray, *, titles=None, ncols: int | None = None, per_map: bool = False,
             diverging: bool = False, filters: np.ndarray | None = None, width_px: int = 900,
             max_cell_px: int = 150, value_range: tuple[float, float] | None = None,
             colorbar: bool = True) -> go.Figure:
    """A grid of heatmaps, one per channel of `maps` (C, H, W), each optionally with its filter
    (C, k, k) drawn small above it.

    per_map: each map gets its own colour range (shows the pattern inside weak maps, hides which
    maps are strong); otherwise one range and one colour bar for all. value_range fixes the shared
    range (to compare two inputs on one scale). Diverging scales are centred at 0.

    All maps are one heatmap trace (and all filters a second), tiled with NaN gaps: a figure costs
    the same few milliseconds for 6 maps or 64, where one trace per map costs ~0.4 ms each.
    width_px is the width the figure is expected to get; it only sets the height.
    """
    maps = np.asarray(maps, dtype=np.float32)
    c, s, _ = maps.shape
    ncols = ncols or grid_shape(c)[1]
    nrows = math.ceil(c / ncols)
    titles = titles or [f"{i + 1}" for i in range(c)]

    # Geometry in units of one map pixel; y grows downwards.
    gap = max(2.0, 0.15 * s)
    title_h = 0.3 * s + 2
    filt = 0.5 * s if filters is not None else 0.0
    filt_gap = 0.1 * s + 1 if filters is not None else 0.0
    band = title_h + filt + filt_gap + s + gap
    xs = [col * (s + gap) for col in range(ncols)]
    map_ys = [r * band + title_h + filt + filt_gap for r in range(nrows)]
    width_units, height_units = ncols * (s + gap) - gap, nrows * band - gap

    if value_range is not None:
        shared = (-max(map(abs, value_range)), max(map(abs, value_range))) if diverging else value_range
    else:
        shared = _limits(maps, diverging)
    scale = DIVERGING if diverging else SEQUENTIAL

    shown = _normalise_each(maps, diverging) if per_map else maps
    x, y, z, which = _tile(shown, xs, map_ys, 1.0)
    raw = _tile(maps, xs, map_ys, 1.0)[2] if per_map else z
    data = [dict(type="heatmap", x=x, y=y, z=z, coloraxis="coloraxis", name="maps",
                 customdata=np.dstack([which + 1, raw]),
                 hovertemplate="map %{customdata[0]}: %{customdata[1]:.3f}<extra></extra>")]
    if filters is not None:
        filters = np.asarray(filters, dtype=np.float32)
        k = filters.shape[-1]
        fx = [x0 + (s - filt) / 2 for x0 in xs]
        fy = [r * band + title_h for r in range(nrows)]
        shown_f = _normalise_each(filters, True) if per_map else filters
        x_f, y_f, z_f, which_f = _tile(shown_f, fx, fy, filt / k)
        raw_f = _tile(filters, fx, fy, filt / k)[2] if per_map else z_f
        data.append(dict(type="heatmap", x=x_f, y=y_f, z=z_f, coloraxis="coloraxis2", name="filters",
                         customdata=np.dstack([which_f + 1, raw_f]),
                         hovertemplate="filter %{customdata[0]}: weight %{customdata[1]:.3f}<extra></extra>"))
    data.append(dict(type="scatter", mode="text", x=[x0 + s / 2 for x0 in xs] * nrows, hoverinfo="skip",
                     y=[r * band + title_h / 2 for r in range(nrows) for _ in range(ncols)][:c],
                     text=titles, textfont=dict(size=FONT - 2)))

    bar = colorbar and not per_map
    cell_px = min(max_cell_px, (width_px - (80 if bar else 0)) / ncols)
    height = int(height_units * cell_px / (s + gap)) + 10
    layout = dict(
        height=max(height, 120), showlegend=False, font_size=FONT, margin=dict(l=0, r=0, t=0, b=0),
        xaxis=dict(visible=False, range=[-0.5, width_units + 0.5], constrain="domain", fixedrange=True),
        yaxis=dict(visible=False, range=[height_units + 0.5, -0.5], scaleanchor="x", constrain="domain",
                   fixedrange=True),
        coloraxis=dict(colorscale=scale, cmin=-1 if per_map and diverging else 0 if per_map else shared[0],
                       cmax=1 if per_map else shared[1], showscale=bar,
                       colorbar=dict(thickness=14, outlinewidth=0, len=min(1.0, max(0.5, 0.9 * nrows / 2)))))
    if filters is not None:
        lim = (-1.0, 1.0) if per_map else _limits(filters, True)
        layout["coloraxis2"] = dict(colorscale=DIVERGING, cmin=lim[0], cmax=lim[1], showscale=False)
    return go.Figure(dict(data=data, layout=layout))


def kernel_tiles(weights: np.ndarray, cell_px: int = 14) -> go.Figure:
    """Every kernel of a conv layer (C_out, C_in, k, k) in one heatmap: a row per output
    channel, a column per input channel, NaN gaps between kernels. One trace, so it stays fast."""
    w = np.asarray(weights, dtype=np.float32)
    c_out, c_in, k, _ = w.shape
    step = k + 1
    tiles = np.full((c_out * step - 1, c_in * step - 1), np.nan, np.float32)
    for o in range(c_out):
        for i in range(c_in):
            tiles[o * step:o * step + k, i * step:i * step + k] = w[o, i]
    m = float(np.nanmax(np.abs(tiles))) or 1.0
    fig = go.Figure(go.Heatmap(z=tiles, zmin=-m, zmax=m, colorscale=DIVERGING,
                               colorbar=dict(thickness=12, title="weight"),
                               hovertemplate="%{z:.3f}<extra></extra>"))
    centres = [j * step + (k - 1) / 2 for j in range(max(c_out, c_in))]
    fig.update_layout(
        height=max(200, c_out * step * cell_px // 2 + 60), font_size=FONT - 2,
        margin=dict(l=0, r=0, t=30, b=0),
        xaxis=dict(tickvals=centres[:c_in], ticktext=[f"in {i + 1}" for i in range(c_in)], side="top",
                   showgrid=False, zeroline=False, constrain="domain"),
        yaxis=dict(tickvals=centres[:c_out], ticktext=[f"out {o + 1}" for o in range(c_out)],
                   autorange="reversed", scaleanchor="x", showgrid=False, zeroline=False, constrain="domain"))
    return fig


def run_single_threaded(fn, *args, **kwargs):
    """fn(*args) in the one-thread inference worker (see _single_threaded), e.g. an attribution."""
    return _single_threaded().submit(fn, *args, **kwargs).result()
