"""What the Evaluate page shows: one pass over the test set (kept, so reruns are instant),
the confusion-matrix and per-class figures, a click on a confusion cell read as gallery filters,
and the gallery itself: which images, which page of them, and their cards."""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from PIL import Image

from lenet_core.train import evaluate

GALLERY_SIZE = 24
ORDERS = ("surest first", "random")
# Session-state keys of the page's choices (the widgets' keys, kept across page switches).
CONFUSION_KEY = "evaluate_confusion"
TRUE_KEY, PRED_KEY, ORDER_KEY = "evaluate_true", "evaluate_pred", "evaluate_order"
PAGE_KEY, SEED_KEY = "evaluate_page", "evaluate_seed"
HIGHLIGHT = "#f08c00"  # the chosen cell's frame: visible on the light and the dark theme


@dataclass(frozen=True)
class Evaluation:
    """A model's predictions on a data set's test split, and the counts made from them."""

    dataset: str
    classes: tuple[str, ...]
    loss: float
    confusion: np.ndarray     # (C, C) counts; rows: true class, columns: predicted class
    labels: np.ndarray        # (N,) true class of each test image
    predictions: np.ndarray   # (N,) predicted class
    confidence: np.ndarray    # (N,) probability the model gave its prediction
    seconds: float

    @property
    def count(self) -> int:
        return len(self.labels)

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion)) / max(self.count, 1)

    @property
    def per_class_accuracy(self) -> np.ndarray:
        return np.diag(self.confusion) / np.maximum(self.confusion.sum(1), 1)

    @property
    def mistakes(self) -> np.ndarray:
        """Test indices of the misclassified images, in test-set order."""
        return np.flatnonzero(self.predictions != self.labels)


def run_evaluation(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   classes: tuple[str, ...], dataset: str = "", batch_size: int = 2048) -> Evaluation:
    """lenet_core's evaluate() on uint8 images (N, 28, 28), keeping each image's prediction
    and confidence, which the gallery needs."""
    t0 = time.perf_counter()
    result = evaluate(model, images, labels, batch_size, num_classes=max(len(classes), model.config.num_classes),
                      keep_predictions=True)
    return Evaluation(dataset, tuple(classes), result["loss"], np.array(result["confusion"], dtype=np.int64),
                      labels.cpu().numpy().astype(np.int64), result["predictions"].numpy().astype(np.int64),
                      result["confidence"].numpy(), time.perf_counter() - t0)


# -- caching: shipped models are shared by everyone, the rest belong to one session ------------

@st.cache_resource(show_spinner=False, max_entries=8)
def _shared_evaluation(model_key: str, dataset: str, _model, _data) -> Evaluation:
    return run_evaluation(_model, _data.test_images, _data.test_labels, _data.classes, dataset)


def evaluation_for(entry, data) -> Evaluation:
    """The evaluation of a ModelEntry on its data set, computed once (about 1 s for 10k images on a CPU)."""
    if entry.source == "shipped":
        return _shared_evaluation(entry.key, data.name, entry.model, data)
    cache = st.session_state.setdefault("evaluate_cache", {})
    key = (entry.key, data.name, id(entry.model))  # id: a re-uploaded checkpoint may reuse a key
    if key not in cache:
        while len(cache) >= 6:  # keep a session's memory bounded
            cache.pop(next(iter(cache)))
        cache[key] = run_evaluation(entry.model, data.test_images, data.test_labels, data.classes, data.name)
    return cache[key]


# -- figures ---------------------------------------------------------------------------------

_SHARE_TICKS = (0, 0.01, 0.05, 0.2, 0.5, 1)


def confusion_figure(ev: Evaluation, true_class: int | None = None, predicted: int | None = None) -> go.Figure:
    """Counts in the cells; colour by the share of the true class on a square-root scale,
    so that a 2% confusion is visible next to a 95% diagonal. The cells can be clicked: plotly
    cannot select a heatmap's cells, so an invisible marker sits on each cell's centre and
    carries (true, predicted) in its customdata (see cell_from_selection). The gallery's
    filters are framed: the cell, or the row / column of a single filter."""
    counts = ev.confusion
    n = len(counts)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    text = np.where(counts > 0, counts.astype(str), "")
    names = list(ev.classes) + [str(i) for i in range(len(ev.classes), n)]
    fig = go.Figure(go.Heatmap(
        z=np.sqrt(share), x=names, y=names, text=text, texttemplate="%{text}", hoverinfo="skip",
        colorscale="Blues", zmin=0, zmax=1, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="share of<br>true class"), thickness=14, tickvals=np.sqrt(_SHARE_TICKS),
                      ticktext=[f"{t:.0%}" for t in _SHARE_TICKS]),
    ))
    t, p = np.divmod(np.arange(n * n), n)  # the cells row by row: point_index = t * n + p
    fig.add_trace(go.Scatter(
        x=[names[i] for i in p], y=[names[i] for i in t], mode="markers", showlegend=False,
        marker=dict(size=24, opacity=0), selected=dict(marker=dict(opacity=0)),
        unselected=dict(marker=dict(opacity=0)),
        customdata=np.stack([t, p, counts[t, p], share[t, p]], 1),
        text=np.where(counts[t, p] > 0, np.where(t == p, "click to see these correct answers",
                                                 "click to see these images"), ""),
        hovertemplate="true <b>%{y}</b>, predicted <b>%{x}</b><br>"
                      "%{customdata[2]} images (%{customdata[3]:.1%} of this class)<br><i>%{text}</i><extra></extra>",
    ))
    if true_class is not None or predicted is not None:  # the filters, framed
        rows = (true_class, true_class) if true_class is not None else (0, n - 1)
        cols = (predicted, predicted) if predicted is not None else (0, n - 1)
        fig.add_shape(type="rect", x0=cols[0] - 0.5, x1=cols[1] + 0.5, y0=rows[0] - 0.5, y1=rows[1] + 0.5,
                      xref="x", yref="y", line=dict(color=HIGHLIGHT, width=4), layer="above")
    # Nothing to pan or zoom: a drag or a double click must not move the matrix away.
    fig.update_xaxes(title="predicted class", tickangle=-45 if max(map(len, names)) > 2 else 0, type="category",
                     tickfont_size=15, fixedrange=True, showgrid=False, zeroline=False)
    fig.update_yaxes(title="true class", autorange="reversed", type="category", tickfont_size=15,
                     fixedrange=True, showgrid=False, zeroline=False)
    fig.update_traces(textfont_size=15, selector=dict(type="heatmap"))
    fig.update_layout(hovermode="closest", hoverdistance=-1)  # the nearest centre: anywhere in a cell
    return _layout(fig)


def cell_from_selection(selection, n_classes: int) -> tuple[int, int] | None:
    """(true class, predicted class) of the confusion cell a selection event names, or None.

    Streamlit reports a click on confusion_figure's markers as {"points": [{"customdata":
    [true, predicted, count, share], "point_index": true * n + predicted, "x": ..., "y": ...}], ...};
    customdata is read first, point_index if it is missing."""
    points = (selection or {}).get("points") or []
    for point in points:
        if not isinstance(point, dict) or point.get("curve_number", 1) != 1:
            continue  # only the markers' trace (1) names cells
        custom = point.get("customdata")
        try:
            if isinstance(custom, (list, tuple)) and len(custom) >= 2:
                t, p = int(custom[0]), int(custom[1])
            elif point.get("point_index") is not None:
                t, p = divmod(int(point["point_index"]), n_classes)
            else:
                continue
        except (TypeError, ValueError):
            continue
        if 0 <= t < n_classes and 0 <= p < n_classes:
            return t, p
    return None


def _on_cell_click(n_classes: int) -> None:
    """The confusion chart's on_select: a clicked cell becomes the gallery's two filters."""
    state = st.session_state.get(CONFUSION_KEY) or {}
    cell = cell_from_selection(state.get("selection"), n_classes)
    if cell is not None:
        st.session_state[TRUE_KEY], st.session_state[PRED_KEY] = cell
        st.session_state[PAGE_KEY] = 1


def confusion_chart(ev: Evaluation) -> None:
    """The confusion matrix, drawn so that a click on a cell filters the gallery to it."""
    st.plotly_chart(confusion_figure(ev, st.session_state.get(TRUE_KEY), st.session_state.get(PRED_KEY)),
                    key=CONFUSION_KEY, on_select=partial(_on_cell_click, len(ev.confusion)),
                    selection_mode="points", config={"displayModeBar": False})


def per_class_figure(ev: Evaluation) -> go.Figure:
    acc = ev.per_class_accuracy[:len(ev.classes)]
    fig = go.Figure(go.Bar(
        x=acc, y=list(ev.classes), orientation="h", text=[f"{a:.1%}" for a in acc], textposition="outside",
        cliponaxis=False, textfont_size=15, hovertemplate="%{y}: %{x:.1%} correct<extra></extra>",
    ))
    # Room right of 100% for the labels, which sit outside the bars so that 0% shows too
    # ("100.0%" needs about 0.3 of the axis in a 1024-pixel window).
    fig.update_xaxes(range=[0, 1.32], tickvals=[0, 0.25, 0.5, 0.75, 1], tickformat=".0%", title="correct",
                     tickfont_size=15)
    fig.update_yaxes(autorange="reversed", type="category", tickfont_size=15)
    return _layout(fig)


def _layout(fig: go.Figure) -> go.Figure:
    # Sizes for a projector; colours are left to Streamlit's theme (light or dark).
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=10, b=10), font_size=15, hoverlabel_font_size=15)
    return fig


# -- the gallery -------------------------------------------------------------------------------

def select_images(ev: Evaluation, true_class: int | None = None, predicted: int | None = None,
                  order: str = ORDERS[0], seed: int = 0) -> np.ndarray:
    """Test indices for the gallery, in its order: the mistakes that match the filters, or, for
    a diagonal cell (true class == predicted class), that class's correct answers."""
    if true_class is not None and true_class == predicted:
        idx = np.flatnonzero((ev.labels == true_class) & (ev.predictions == true_class))
    else:
        idx = ev.mistakes
        if true_class is not None:
            idx = idx[ev.labels[idx] == true_class]
        if predicted is not None:
            idx = idx[ev.predictions[idx] == predicted]
    if order == "random":
        return np.random.default_rng(seed).permutation(idx)
    # The mistakes the model was surest about teach the most.
    return idx[np.argsort(-ev.confidence[idx], kind="stable")]


@dataclass(frozen=True)
class GalleryPage:
    indices: np.ndarray  # the test indices on this page
    total: int           # how many images match the filters
    page: int            # 1-based, within 1..pages
    pages: int
    size: int = GALLERY_SIZE

    @property
    def first(self) -> int:
        return (self.page - 1) * self.size + 1 if self.total else 0

    @property
    def span(self) -> str:
        """e.g. '25–48 of 151'."""
        return f"{self.first}–{self.first + len(self.indices) - 1} of {self.total:,}"


def gallery_page(images: np.ndarray, page: int = 1, size: int = GALLERY_SIZE) -> GalleryPage:
    """Page `page` (1-based; brought within range) of `images`, `size` a page."""
    pages = max(1, -(-len(images) // size))
    page = min(max(int(page), 1), pages)
    return GalleryPage(images[(page - 1) * size:page * size], len(images), page, pages, size)


def _turn(step: int) -> None:
    st.session_state[PAGE_KEY] = st.session_state.get(PAGE_KEY, 1) + step


def _shuffle() -> None:
    st.session_state[SEED_KEY] = st.session_state.get(SEED_KEY, 0) + 1


def gallery_filters(ev: Evaluation) -> tuple[int | None, int | None, str, int]:
    """The filter row (a confusion cell's click sets the first two): (true, predicted, order, seed)."""
    options = [None, *range(len(ev.classes))]
    name = {None: "any", **dict(enumerate(ev.classes))}.get
    for key in (TRUE_KEY, PRED_KEY):  # a model with fewer classes than the last one
        if st.session_state.get(key) not in options:
            st.session_state[key] = None
    f1, f2, f3, f4 = st.columns([3, 3, 3, 2], vertical_alignment="bottom")
    true_class = f1.selectbox("True class", options, format_func=name, key=TRUE_KEY, persist_state="session")
    predicted = f2.selectbox("Predicted as", options, format_func=name, key=PRED_KEY, persist_state="session")
    order = f3.segmented_control("Order", ORDERS, default=ORDERS[0], required=True, key=ORDER_KEY,
                                 persist_state="session")
    f4.button("Shuffle", key="evaluate_shuffle", icon=":material/shuffle:", disabled=order != "random",
              on_click=_shuffle, width="stretch")
    return true_class, predicted, order, st.session_state.get(SEED_KEY, 0)


def current_page(images: np.ndarray, choice: tuple) -> GalleryPage:
    """The page of `images` to show: page 1 again whenever `choice` (model, filters, order, seed) changes."""
    ss = st.session_state
    if ss.get("evaluate_page_for") != choice:
        ss["evaluate_page_for"], ss[PAGE_KEY] = choice, 1
    page = gallery_page(images, ss.get(PAGE_KEY, 1))
    ss[PAGE_KEY] = page.page
    return page


def pager(page: GalleryPage, where: str = "") -> None:
    """Previous / Next, for more than one page."""
    if page.pages > 1:
        back, ahead = st.columns(2)
        back.button("Previous", key=f"evaluate_prev{where}", icon=":material/chevron_left:", on_click=_turn,
                    args=(-1,), disabled=page.page == 1, width="stretch")
        ahead.button("Next", key=f"evaluate_next{where}", icon=":material/chevron_right:", on_click=_turn,
                     args=(1,), disabled=page.page == page.pages, width="stretch")


def top_confusions(ev: Evaluation, k: int = 3) -> list[tuple[int, int, int]]:
    """The k most frequent (true, predicted, count) off-diagonal cells."""
    off = ev.confusion.copy()
    np.fill_diagonal(off, 0)
    cells = np.argsort(-off, axis=None, kind="stable")[:k]
    return [(int(t), int(p), int(off[t, p])) for t, p in zip(*np.unravel_index(cells, off.shape)) if off[t, p] > 0]


def thumbnail(image: torch.Tensor | np.ndarray, size: int = 112) -> Image.Image:
    """A uint8 (28, 28) image scaled up with hard pixel edges (browsers blur small images)."""
    arr = image.cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    return Image.fromarray(arr.astype(np.uint8), mode="L").resize((size, size), Image.NEAREST)


