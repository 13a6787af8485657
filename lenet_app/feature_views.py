"""Views of the whole test set as a model sees it: the test set's map (the last hidden layer's
output of every test image in two dimensions, coloured by true class, mistakes marked), the same
map replayed epoch by epoch from a run's recording, and the test images that excite each channel
most. A click on an image opens it on Activations, as the Evaluate gallery's images do.

PCA and the top images are computed in the page's run (a second or two); UMAP and t-SNE take tens
of seconds, so they run in a background thread of the server, one at a time, with a progress bar,
and every result is cached with the model (its run folder, or a cache folder for a shipped one)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
import torch.nn.functional as F

from lenet_core import feature_map as fmap
from lenet_core import top_images as tops
from lenet_core.data import DATASETS, cache_dir
from lenet_core.feature_frames import FILE as FEATURES_FILE
from lenet_core.feature_frames import load_features
from lenet_core.train import as_input

from .datasets import missing_data_markdown

ss = st.session_state
VIEWS = ("Test-set map", "Top images")
ACTIVATIONS = "views/activations.py"
# Ten colours that stay apart on a projector (Plotly's D3 set).
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
FONT = 15
SLOW = {"UMAP": "about a minute", "t-SNE": "about a minute"}
UNITS_PER_PAGE = 16


def cache_folder(entry) -> Path:
    """Where a model's maps and top images are kept: its run folder, or for a shipped model (whose
    folder is part of the app) a folder of its own in the data cache."""
    if entry.source == "shipped" or entry.path is None:
        return cache_dir() / "maps" / entry.key.replace(":", "-")
    return Path(entry.path)


# -- opening an image on Activations -----------------------------------------------------------

def request_image(model_key: str, dataset: str, index: int) -> None:
    """Ask Activations to show test image `index` (its page honours the request on its next run)."""
    ss["activations_request"] = {"model_key": model_key, "dataset": dataset, "index": int(index), "saliency": True}


def clicked_index(selection, traces: list | None = None) -> int | None:
    """The test index of a clicked point in a plotly selection event: its customdata[0], or else
    `traces[curve_number][point_index]`.
    None for a box or lasso selection and for anything malformed."""
    selection = selection or {}
    if selection.get("box") or selection.get("lasso"):
        return None
    for point in selection.get("points") or []:
        if not isinstance(point, dict):
            continue
        custom = point.get("customdata")
        try:
            if isinstance(custom, dict):   # a typed array's row arrives as {"0": value, ...}
                custom = custom.get("0")
            if custom is not None:
                return int(custom[0] if isinstance(custom, (list, tuple)) else custom)
            if traces is not None:
                curve, i = int(point["curve_number"]), int(point["point_index"])
                if 0 <= curve < len(traces) and 0 <= i < len(traces[curve]):
                    return int(traces[curve][i])
        except (TypeError, ValueError, IndexError, KeyError):
            continue
    return None


def _on_click(key: str, model_key: str, dataset: str, switch: bool) -> None:
    index = clicked_index((ss.get(key) or {}).get("selection"), ss.get(f"{key}.indices"))
    if index is not None:
        request_image(model_key, dataset, index)
        ss["feature_views.switch"] = switch


def follow_click() -> None:
    """After a click on a page other than Activations: go there (not possible inside a callback)."""
    if ss.pop("feature_views.switch", False):
        st.switch_page(ACTIVATIONS)


def open_map_button(key: str = "open_map") -> None:
    """A button (for Evaluate) that opens the test-set map on Activations."""
    if st.button("See the mistakes where they lie: the test set's map", key=key, icon=":material/scatter_plot:"):
        ss["act_view"] = VIEWS[0]
        st.switch_page(ACTIVATIONS)


# -- the scatter -------------------------------------------------------------------------------

def scatter_figure(coords: np.ndarray, labels: np.ndarray, predictions: np.ndarray, classes, indices=None,
                   mistakes_only: bool = False, ranges=None, height: int = 620) -> go.Figure:
    """One WebGL trace per class (its legend entry hides and shows it), mistakes as crosses.
    customdata carries each point's test index, for clicks."""
    indices = np.arange(len(labels)) if indices is None else np.asarray(indices)
    wrong = predictions != labels
    names = [str(c) for c in classes]
    traces = []
    for c, name in enumerate(names):
        keep = (labels == c) & (wrong if mistakes_only else True)
        w = wrong[keep]
        traces.append(go.Scattergl(
            x=coords[keep, 0], y=coords[keep, 1], mode="markers", name=name,
            marker=dict(color=COLOURS[c % len(COLOURS)], size=np.where(w, 8, 5),
                        symbol=np.where(w, "x", "circle"), opacity=0.75, line=dict(width=0)),
            # A click selects a point; nothing should fade, since the click opens it elsewhere.
            selected=dict(marker=dict(opacity=0.75)), unselected=dict(marker=dict(opacity=0.75)),
            customdata=indices[keep][:, None], text=[names[p] for p in predictions[keep]],
            hovertemplate=(f"test image #%{{customdata[0]}}<br>true <b>{name}</b>, model says <b>%{{text}}</b>"
                           "<br><i>click to open it in Activations</i><extra></extra>")))
    fig = go.Figure(traces)
    axis = dict(showticklabels=False, title=None, zeroline=False, showgrid=False)
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=10, b=0), font_size=FONT, hoverlabel_font_size=FONT,
                      legend=dict(title="true class (click to hide)", itemsizing="constant"),
                      xaxis=dict(axis, range=ranges[0] if ranges else None),
                      yaxis=dict(axis, range=ranges[1] if ranges else None), dragmode="pan",
                      uirevision="keep")   # zoom and hidden classes survive a rerun
    return fig


def _chart(fig, key: str, model_key: str, dataset: str, switch: bool) -> None:
    ss[f"{key}.indices"] = [np.asarray(t.customdata).reshape(-1).tolist() for t in fig.data]
    st.plotly_chart(fig, key=key, on_select=partial(_on_click, key, model_key, dataset, switch),
                    selection_mode="points", config={"displayModeBar": False, "scrollZoom": True})


# -- slow projections in the background ----------------------------------------------------------

@dataclass
class Job:
    what: str
    fraction: float = 0.0
    started: float = 0.0      # 0 while it waits for the one projection running before it
    error: str | None = None
    done: bool = False


_jobs: dict[str, Job] = {}
_jobs_lock = threading.Lock()
_one_at_a_time = threading.Semaphore(1)   # two UMAPs at once would only halve each other's speed


def start_job(key: str, what: str, work) -> Job:
    """Run work(progress) in a background thread unless one for `key` is already under way."""
    with _jobs_lock:
        job = _jobs.get(key)
        if job is not None and not job.done and job.error is None:
            return job
        job = _jobs[key] = Job(what)

    def run():
        with _one_at_a_time:
            job.started = time.time()
            try:
                work(lambda f: setattr(job, "fraction", float(f)))
                job.done = True
            except Exception as e:  # shown on the page; the cache stays as it was
                job.error = f"{type(e).__name__}: {e}"

    threading.Thread(target=run, name=f"lenet-map-{what}", daemon=True).start()
    return job


def job_for(key: str) -> Job | None:
    with _jobs_lock:
        return _jobs.get(key)


def _progress(job: Job) -> None:
    if not job.started:
        st.progress(0.0, text=f"{job.what}: waiting for another map to finish…")
    else:
        st.progress(min(job.fraction, 1.0), text=f"{job.what}: {job.fraction:.0%} after "
                                                 f"{time.time() - job.started:.0f} s")


# -- the test set's map --------------------------------------------------------------------------

def test_set_map(entry, data, error) -> None:
    widths = entry.model.config.dense_widths
    what = f"its {widths[-1]} values" if widths else "the flattened conv maps"
    st.caption(f"Every test image placed by what the model's last hidden layer makes of it ({what}), squeezed "
               "into two dimensions. Images the "
               "model finds alike lie close together. Crosses are mistakes. **Click a point** to open that image "
               "in the One input view; click a class in the legend to hide it.")
    if data is None:
        st.warning("The map needs the test images of the data set the model was trained on.\n\n"
                   + missing_data_markdown(error))
        return
    c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
    method = c1.segmented_control("Projection", fmap.METHODS, default="PCA", required=True, key="map.method",
                                  persist_state="session",
                                  help="PCA: the two directions in which the images differ most (instant). UMAP "
                                       "and t-SNE keep neighbours together and pull the classes further apart; "
                                       "they take about a minute the first time, then are kept with the model.")
    mistakes_only = c2.toggle("Mistakes only", key="map.mistakes", persist_state="session")
    folder = cache_folder(entry)
    path = fmap.cache_path(folder, method, data.name)
    m = fmap.load_map(path, fmap.fingerprint(entry.model))
    if m is not None and len(m.labels) != len(data.test_labels):
        m = None
    if m is None and method == "PCA":
        with st.spinner(f"Running the model on {len(data.test_labels):,} test images…"):
            m, _ = fmap.cached_feature_map(folder, entry.model, data.test_images, data.test_labels, method, data.name)
    if m is None:
        _slow_map(entry, data, method, folder, path)
        return
    wrong = int(m.mistakes.sum())
    st.caption(f"{method} of the {m.dims} values of `{m.layer}` for {len(m.labels):,} test images; "
               f"{wrong:,} mistakes ({wrong / max(len(m.labels), 1):.1%}). Made in {m.seconds:.1f} s, kept with the "
               "model.")
    _chart(scatter_figure(m.coords, m.labels, m.predictions, entry.classes, mistakes_only=mistakes_only),
           "map.chart", entry.key, data.name, switch=False)


def _slow_map(entry, data, method, folder, path) -> None:
    key = str(path)
    job = job_for(key)
    if job is None or job.error is not None:
        if job is not None:
            st.error(f"The {method} map could not be made: {job.error}")
        st.info(f"{method} takes {SLOW[method]} on this server the first time; the map is then kept with the "
                "model, and opens at once.", icon=":material/hourglass:")
        if st.button(f"Make the {method} map", key="map.start", icon=":material/play_arrow:"):
            model, images, labels, name = entry.model, data.test_images, data.test_labels, data.name
            start_job(key, f"{method} of {len(labels):,} test images",
                      lambda report: fmap.cached_feature_map(folder, model, images, labels, method, name, report))
            st.rerun()
        return

    @st.fragment(run_every=1.0)
    def watch():
        j = job_for(key)
        if j is None or j.done or j.error is not None:
            st.rerun()  # the whole page: the map is ready (or failed)
        _progress(j)

    watch()


# -- the map over training -----------------------------------------------------------------------

@st.cache_resource(show_spinner=False, max_entries=6)
def _recording(path: str, modified: int) -> dict | None:
    try:
        saved = load_features(path)
    except (ValueError, OSError):
        return None
    feats = saved["features"].float().numpy()            # (E, P, D)
    if not len(feats):
        return None
    # One projection for all epochs, fitted on the last: what moves on screen is the network.
    _, basis = fmap.pca(feats[-1])
    coords = np.stack([fmap.pca(f, basis)[0] for f in feats])
    lo, hi = coords.reshape(-1, 2).min(0), coords.reshape(-1, 2).max(0)
    pad = (hi - lo) * 0.05 + 1e-6
    return {"epochs": list(saved["epochs"]), "coords": coords, "labels": saved["labels"].numpy(),
            "indices": saved["indices"].numpy(), "predictions": saved["predictions"].long().numpy(),
            "layer": saved["layer"], "dims": feats.shape[2], "stride": int(saved["stride"]),
            "ranges": [[float(lo[0] - pad[0]), float(hi[0] + pad[0])], [float(lo[1] - pad[1]), float(hi[1] + pad[1])]]}


def recording_of(run_path) -> dict | None:
    path = Path(run_path) / FEATURES_FILE
    try:
        return _recording(str(path), path.stat().st_mtime_ns)
    except OSError:
        return None


def training_map(run_path, classes, key: str, model_key: str | None, dataset: str, on_activations: bool) -> bool:
    """The recorded sample's map at each epoch, with an epoch slider; False where the run has
    no recording. A click opens the image on Activations (where the run has weights)."""
    rec = recording_of(run_path)
    if rec is None:
        return False
    epochs = rec["epochs"]
    # Follow a training run: whoever was looking at the latest epoch sees the new one.
    if ss.get(f"{key}.epoch") not in epochs or ss.get(f"{key}.epoch") == ss.get(f"{key}.latest"):
        ss[f"{key}.epoch"] = epochs[-1]
    ss[f"{key}.latest"] = epochs[-1]
    epoch = st.select_slider("Epoch", epochs, key=f"{key}.epoch",
                             help="0 is before training. One projection (PCA, fitted on the latest epoch) for "
                                  "every epoch, so what moves is the network.")
    e = epochs.index(epoch)
    wrong = rec["predictions"][e] != rec["labels"]
    note = f" (every {rec['stride']}th epoch kept, and the latest)" if rec["stride"] > 1 else ""
    st.caption(f"Epoch {epoch} of the {len(epochs)} recorded{note}: {len(rec['labels']):,} test images "
               f"({len(rec['labels']) // max(len(classes), 1)} per class), PCA of the {rec['dims']} values of "
               f"`{rec['layer']}`; {int(wrong.sum())} of them wrong at this epoch (crosses).")
    fig = scatter_figure(rec["coords"][e], rec["labels"], rec["predictions"][e], classes, rec["indices"],
                         ranges=rec["ranges"], height=520)
    if model_key is None:
        st.plotly_chart(fig, key=f"{key}.chart", config={"displayModeBar": False})
    else:
        _chart(fig, f"{key}.chart", model_key, dataset, switch=not on_activations)
    return True


def train_panel(info, refresh_s: float) -> None:
    """On Train, below the run on show: its map over training, following it while it trains."""
    if not st.toggle("The test set's map, epoch by epoch: watch the classes pull apart", key="train.fmap",
                     persist_state="session",
                     help="1,000 test images (100 per class) placed by the last hidden layer, recorded at every "
                          "epoch's end. A click on a point opens that image on Activations."):
        return
    classes = DATASETS[info.config.dataset][2]
    model_key = f"run:{info.id}" if (info.path / "checkpoint.pt").exists() else None

    @st.fragment(run_every=refresh_s if info.live else None)
    def body():
        if not training_map(info.path, classes, "train.fmap", model_key, info.config.dataset, on_activations=False):
            st.caption("Nothing recorded yet: the first map is written when the run starts (runs trained before "
                       "this version of LeNet Lab have none).")
        follow_click()

    body()


def epochs_map(entry) -> None:
    """On Activations' Epoch by epoch view, below the scrubber: the run's map over training."""
    if entry.path is None or recording_of(entry.path) is None:
        return
    if st.toggle("The test set's map, epoch by epoch: watch the classes pull apart", key="act.fmap",
                 persist_state="session", help="1,000 test images (100 per class) placed by the last hidden layer, "
                                               "recorded at every epoch's end. A click opens that image."):
        training_map(entry.path, entry.classes, "act.fmap", entry.key, entry.dataset, on_activations=True)


# -- what excites each channel -------------------------------------------------------------------

def _overlay(images: np.ndarray, maps: np.ndarray | None) -> np.ndarray:
    """RGB uint8 (n, 28, 28, 3): each grayscale image with its channel's map laid over it in
    orange, as strong as the response (one scale for all of the channel's images)."""
    gray = images.astype(np.float32)[..., None] / 255 * 0.85
    rgb = np.repeat(gray, 3, axis=-1)
    if maps is not None:
        top = float(maps.max())
        a = np.clip(maps / top, 0, 1)[..., None] * 0.75 if top > 0 else np.zeros_like(maps)[..., None]
        rgb = rgb * (1 - a) + np.array([1.0, 0.55, 0.0]) * a
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


@torch.inference_mode()
def _unit_maps(model, layer: str, units: list[int], images: torch.Tensor) -> np.ndarray | None:
    """(len(units), k, 28, 28): each unit's map over its own k images, scaled up to the image's
    size; None for dense units, which have no map."""
    if not layer.startswith("conv"):
        return None
    u, k = images.shape[:2]
    h = as_input(images.reshape(u * k, 28, 28)).to(next(model.parameters()).device)
    for name, mod in model.net.named_children():
        h = mod(h)
        if name == layer:
            break
    h = h.float().cpu().reshape(u, k, h.shape[1], h.shape[2], h.shape[3])
    picked = torch.stack([h[i, :, c] for i, c in enumerate(units)])               # (u, k, H, W)
    return F.interpolate(picked, size=(28, 28), mode="bilinear", align_corners=False).numpy()


def top_figure(tiles: np.ndarray, indices: np.ndarray, values: np.ndarray, units: list[int], labels, classes,
               layer: str) -> go.Figure:
    """The tiles (units, k, 28, 28, 3) as one picture, a row per unit, and an invisible marker on
    each tile carrying its test index (plotly cannot report a click on an image's pixels)."""
    u, k = tiles.shape[:2]
    gap, step = 3, 28 + 3
    canvas = np.full((u * step - gap, k * step - gap, 3), 255, np.uint8)
    for r in range(u):
        for c in range(k):
            canvas[r * step:r * step + 28, c * step:c * step + 28] = tiles[r, c]
    rr, cc = np.divmod(np.arange(u * k), k)
    flat = indices.reshape(-1)
    fig = go.Figure([
        go.Image(z=canvas, hoverinfo="skip"),
        go.Scatter(x=cc * step + 13.5, y=rr * step + 13.5, mode="markers", showlegend=False,
                   marker=dict(size=28, opacity=0), selected=dict(marker=dict(opacity=0)),
                   unselected=dict(marker=dict(opacity=0)),
                   customdata=np.stack([flat, values.reshape(-1), np.repeat(np.array(units) + 1, k),
                                        np.tile(np.arange(1, k + 1), u)], 1),
                   text=[str(classes[int(labels[i])]) for i in flat],
                   hovertemplate=(f"{layer[:-4] if layer.endswith('_act') else layer} unit %{{customdata[2]}}, "
                                  "#%{customdata[3]}: test image #%{customdata[0]} (%{text})<br>response "
                                  "%{customdata[1]:.3f}<br><i>click to open it in Activations</i><extra></extra>"))])
    fig.update_xaxes(visible=False, fixedrange=True)
    fig.update_yaxes(visible=False, fixedrange=True, tickvals=[r * step + 13.5 for r in range(u)])
    px_per_tile = 62
    fig.update_layout(height=u * px_per_tile + 10, width=k * px_per_tile + 10, margin=dict(l=0, r=0, t=0, b=0),
                      hovermode="closest", font_size=FONT)
    return fig


def top_images_view(entry, data, error) -> None:
    st.caption("For each channel, the test images that make it respond most (its largest value anywhere in its "
               "map), with its map laid over each in orange: what the channel looks for. Computed once per model "
               "over the whole test set. **Click an image** to open it in the One input view.")
    if data is None:
        st.warning("This view needs the test images of the data set the model was trained on.\n\n"
                   + missing_data_markdown(error))
        return
    model = entry.model
    c1, c2, c3 = st.columns([2, 2, 2], vertical_alignment="bottom")
    dense = c3.toggle("Dense units too", key="top.dense", persist_state="session",
                      help="The hidden dense layers' units as well (each unit is one number per image: no map).")
    layers = tops.unit_layers(model, dense)
    if ss.get("top.layer") not in layers:
        ss["top.layer"] = layers[0]
    layer = c1.selectbox("Layer", layers, key="top.layer", format_func=lambda n: n[:-4] if n.endswith("_act") else n)
    folder = cache_folder(entry)
    t = tops.load_top(tops.cache_path(folder, data.name, dense), fmap.fingerprint(model))
    if t is None or t.count != len(data.test_images):
        bar = st.progress(0.0, text=f"Ranking {len(data.test_images):,} test images for every channel…")
        t, _ = tops.cached_top_images(folder, model, data.test_images, data.name, dense,
                                      progress=lambda f: bar.progress(f, text=f"Ranking test images: {f:.0%}"))
        bar.empty()
    values, indices = t.layers[layer]
    n_units = len(values)
    pages = [(s, min(s + UNITS_PER_PAGE, n_units)) for s in range(0, n_units, UNITS_PER_PAGE)]
    if len(pages) > 1:
        first, last = c2.selectbox("Units", pages, key=f"top.page.{layer}", format_func=lambda p: f"{p[0] + 1}–{p[1]}")
    else:
        first, last = pages[0]
    units = list(range(first, last))
    idx = indices[first:last]
    images = data.test_images[torch.from_numpy(idx.reshape(-1))].reshape(len(units), idx.shape[1], 28, 28)
    maps = _unit_maps(model, layer, units, images)
    tiles = np.stack([_overlay(images[i].numpy(), None if maps is None else maps[i]) for i in range(len(units))])
    st.caption(f"`{layer}`: units {first + 1}–{last} of {n_units}, the top {idx.shape[1]} of {t.count:,} test "
               f"images each, one row per unit (ranked in {t.seconds:.1f} s, kept with the model).")
    st.plotly_chart(top_figure(tiles, idx, values[first:last], units, data.test_labels, entry.classes, layer),
                    key="top.chart", on_select=partial(_on_click, "top.chart", entry.key, data.name, False),
                    selection_mode="points", config={"displayModeBar": False})
