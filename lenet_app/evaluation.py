"""What the Evaluate page shows: one pass over the test set (kept, so reruns are instant),
the confusion-matrix and per-class figures, and which mistakes the gallery picks."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from PIL import Image

from lenet_core.train import evaluate

GALLERY_SIZE = 24
ORDERS = ("surest first", "random")


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


def confusion_figure(ev: Evaluation) -> go.Figure:
    """Counts in the cells; colour by the share of the true class on a square-root scale,
    so that a 2% confusion is visible next to a 95% diagonal."""
    counts = ev.confusion
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    text = np.where(counts > 0, counts.astype(str), "")
    names = list(ev.classes) + [str(i) for i in range(len(ev.classes), len(counts))]
    fig = go.Figure(go.Heatmap(
        z=np.sqrt(share), x=names, y=names, text=text, texttemplate="%{text}",
        customdata=np.dstack([counts, share]),
        hovertemplate="true <b>%{y}</b>, predicted <b>%{x}</b><br>"
                      "%{customdata[0]} images (%{customdata[1]:.1%} of this class)<extra></extra>",
        colorscale="Blues", zmin=0, zmax=1, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="share of<br>true class"), thickness=14, tickvals=np.sqrt(_SHARE_TICKS),
                      ticktext=[f"{t:.0%}" for t in _SHARE_TICKS]),
    ))
    fig.update_xaxes(title="predicted class", tickangle=-45 if max(map(len, names)) > 2 else 0, type="category",
                     tickfont_size=15)
    fig.update_yaxes(title="true class", autorange="reversed", type="category", tickfont_size=15)
    fig.update_traces(textfont_size=15)
    return _layout(fig)


def per_class_figure(ev: Evaluation) -> go.Figure:
    acc = ev.per_class_accuracy[:len(ev.classes)]
    fig = go.Figure(go.Bar(
        x=acc, y=list(ev.classes), orientation="h", text=[f"{a:.1%}" for a in acc], textposition="outside",
        cliponaxis=False, textfont_size=15, hovertemplate="%{y}: %{x:.1%} correct<extra></extra>",
    ))
    # Room right of 100% for the labels, which sit outside the bars so that 0% shows too.
    fig.update_xaxes(range=[0, 1.18], tickvals=[0, 0.25, 0.5, 0.75, 1], tickformat=".0%", title="correct",
                     tickfont_size=15)
    fig.update_yaxes(autorange="reversed", type="category", tickfont_size=15)
    return _layout(fig)


def _layout(fig: go.Figure) -> go.Figure:
    # Sizes for a projector; colours are left to Streamlit's theme (light or dark).
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=10, b=10), font_size=15)
    return fig


# -- the gallery -------------------------------------------------------------------------------

def select_mistakes(ev: Evaluation, true_class: int | None = None, predicted: int | None = None,
                    order: str = ORDERS[0], seed: int = 0, limit: int = GALLERY_SIZE) -> tuple[np.ndarray, int]:
    """(test indices to show, how many mistakes match the filters)."""
    idx = ev.mistakes
    if true_class is not None:
        idx = idx[ev.labels[idx] == true_class]
    if predicted is not None:
        idx = idx[ev.predictions[idx] == predicted]
    if order == "random":
        shown = np.random.default_rng(seed).permutation(idx)[:limit]
    else:  # the mistakes the model was surest about teach the most
        shown = idx[np.argsort(-ev.confidence[idx], kind="stable")][:limit]
    return shown, len(idx)


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


