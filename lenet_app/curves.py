"""The training curves as Plotly figures (plain dicts): a run's loss per step and its per-epoch loss
and accuracy, and several runs overlaid. Built from what a run folder keeps for drawing (the loss
curve in at most a few hundred buckets, the epochs), so a figure costs the same for any run length.

Margins and axis ranges are fixed here rather than left to Plotly: a live chart redrawn twice a
second otherwise measures its labels and picks new ticks each time, CPU that a training run on
the same machine pays for."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lenet_core.train import EpochMetrics

MARGIN = {"l": 60, "r": 10, "t": 50, "b": 45}
EPOCH_MARGIN = {**MARGIN, "t": 70}  # room for the loss chart's legend under its title
HEIGHT = 320
LOG_SPAN = 100  # a loss axis whose values span more than this factor is drawn on a log scale
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


SMOOTH_SHARE = 0.03  # the smoothing window: about 3% of the curve's points


def smooth(values) -> np.ndarray:
    """The mean of a window of about 3% of the curve centred on each point, so the line stays on
    the data instead of trailing them (an exponential average of that width was ~300 steps late on
    a falling loss). Near the ends the window shrinks to stay centred; at the live edge, where a
    centred window would be a single noisy point, it keeps a third of its width behind the point:
    a lag of a sixth of a window, 0.5% of the curve."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 3:
        return values.copy()
    half = max(1, round(n * SMOOTH_SHARE / 2))
    edge = max(1, half // 3)
    i = np.arange(n)
    right = np.minimum(half, n - 1 - i)
    left = np.minimum(np.minimum(half, i), np.maximum(right, edge))
    finite = np.isfinite(values)
    total = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    count = np.concatenate([[0], np.cumsum(finite)])
    lo, hi = i - left, i + right + 1
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (total[hi] - total[lo]) / (count[hi] - count[lo])
    return np.where(count[hi] > count[lo], out, np.nan)


def loss_axis(*series) -> dict:
    """A loss axis from 0 to a little above the largest value; on a log scale when the values
    span orders of magnitude (a run that blew up would flatten every other curve)."""
    values = np.concatenate([np.asarray(s, dtype=float).ravel() for s in series]) if series else np.array([])
    values = values[np.isfinite(values) & (values > 0)]
    axis = {"title": {"text": "loss"}, "rangemode": "tozero"}
    if len(values) and values.max() / values.min() > LOG_SPAN:
        low, high = float(np.log10(values.min())) - 0.1, float(np.log10(values.max())) + 0.1
        # Plotly labels the 2s and 5s between decades as bare digits ("2 1 5 2 0.1"): write them out,
        # and keep to decades when there are many.
        steps = (1, 2, 5) if high - low <= 3 else (1,)
        if steps == (1,):
            low = min(low, float(np.floor(np.log10(values.min()))))  # a decade below the lowest point
        ticks = [m * 10.0 ** d for d in range(int(np.floor(low)), int(np.ceil(high)) + 1) for m in steps]
        ticks = [t for t in ticks if low <= np.log10(t) <= high]
        return {"title": {"text": "loss (log scale)"}, "type": "log", "range": [low, high], "tickvals": ticks,
                "ticktext": [f"{t:,.0f}" if t >= 1 else f"{t:g}" for t in ticks]}
    if len(values):
        axis["range"] = [0.0, float(values.max()) * 1.05]
    return axis


def _figure(traces: list[dict], title: str, xaxis: dict, yaxis: dict, **layout) -> dict:
    # A chart with nothing to show yet still needs one (empty) trace: Plotly refuses no data at all.
    return {"data": traces or [{"type": "scatter", "x": [], "y": [], "showlegend": False}], "layout": {
        "title": {"text": title, "yref": "container", "y": 1, "yanchor": "top", "pad": {"t": 14}},
        "height": HEIGHT, "margin": MARGIN,
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1},
        "xaxis": {**xaxis, "automargin": False}, "yaxis": {**yaxis, "automargin": False}} | layout}


def step_figure(curve: dict, total_steps: int) -> dict:
    """Loss per step: the bucket means faintly, their moving average bold."""
    step, loss = np.asarray(curve.get("step", []), dtype=float), np.asarray(curve.get("loss", []), dtype=float)
    width = curve.get("width", 1)
    smoothed = smooth(loss)
    return _figure(
        [{"type": "scatter", "x": step, "y": loss, "name": "loss per step" if width == 1 else f"mean of {width} steps",
          "mode": "lines", "line": {"width": 1}, "opacity": 0.3, "hoverinfo": "skip"},
         {"type": "scatter", "x": step, "y": smoothed, "name": "smoothed", "mode": "lines", "line": {"width": 3}}],
        "Training loss per step", {"title": {"text": "step"}, "range": [0, max(total_steps, step[-1] if len(step) else 1)]}
        if total_steps or len(step) else {"title": {"text": "step"}, "showticklabels": False},  # queued: no 0-1 axis
        loss_axis(loss, smoothed))


def epoch_figures(epochs: list[EpochMetrics], total_epochs: int) -> tuple[dict, dict]:
    x = [m.epoch for m in epochs]
    xaxis = {"title": {"text": "epoch"}, "range": [0.5, total_epochs + 0.5]}
    if total_epochs <= 20:
        xaxis["dtick"] = 1
    train_loss, val_loss = [m.train_loss for m in epochs], [m.val_loss for m in epochs]
    loss = _figure(
        [{"type": "scatter", "x": x, "y": train_loss, "name": "train", "mode": "lines+markers"},
         {"type": "scatter", "x": x, "y": val_loss, "name": "validation", "mode": "lines+markers"}],
        "Loss per epoch", xaxis, loss_axis(train_loss, val_loss), margin=EPOCH_MARGIN,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "left", "x": 0})
    acc = _figure(
        [{"type": "scatter", "x": x, "y": [m.val_acc for m in epochs], "name": "validation",
          "mode": "lines+markers", "line": {"width": 3}, "cliponaxis": False}],
        "Validation accuracy", xaxis, {"title": {"text": "accuracy"}, "tickformat": ".0%", "range": [0, 1]},
        showlegend=False, margin=EPOCH_MARGIN)
    return loss, acc


def run_figures(live: dict, total_steps: int, total_epochs: int, activation: str = "sigmoid") -> dict[str, dict]:
    """A run's panel charts by name, in page order, from its live.json."""
    epochs = [EpochMetrics(**e) for e in live.get("epochs", [])]
    loss, acc = epoch_figures(epochs, total_epochs)
    figures = {"loss-per-step": step_figure(live.get("curve", {}), total_steps), "loss-per-epoch": loss,
               "val-accuracy": acc, **health_figures(live.get("health") or [], activation, total_steps)}
    changes = live.get("changes") or []
    if changes:
        per_epoch = total_steps / total_epochs if total_steps and total_epochs else None
        mark_changes(figures["loss-per-step"], changes, lambda step: step - 0.5)
        if per_epoch:  # on the epoch charts, where in its epoch the change came (epoch k ends at x = k)
            for name in ("loss-per-epoch", "val-accuracy"):
                mark_changes(figures[name], changes, lambda step: (step - 1) / per_epoch)
    return figures


def mark_changes(figure: dict, changes: list[dict], to_x) -> dict:
    """A dashed line where a setting was changed while the run trained, labelled "lr 0.1→0.9"."""
    layout = figure["layout"]
    shapes, notes = list(layout.get("shapes", [])), list(layout.get("annotations", []))
    for i, c in enumerate(changes):
        x = to_x(c["step"])
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1,
                       "line": {"color": "#d62728", "width": 2, "dash": "dash"}, "name": "setting change"})
        notes.append({"x": x, "xref": "x", "yref": "paper", "y": 0.98 - 0.09 * (i % 3), "xanchor": "left",
                      "yanchor": "top", "showarrow": False, "text": f"{c['setting']} {c['old']:g}→{c['value']:g}",
                      "font": {"color": "#d62728", "size": 13}, "bgcolor": "rgba(255,255,255,0.8)"})
    layout["shapes"], layout["annotations"] = shapes, notes
    return figure


def overlay_figure(runs: list[tuple[str, dict, str]]) -> go.Figure:
    """Validation accuracy per epoch and smoothed loss per step of several runs (name, live.json,
    the run's own colour), overlaid: two panels side by side, one legend (a click on a run hides it
    in both)."""
    most_epochs = max([len(live.get("epochs", [])) for _, live, _ in runs] + [1])
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("<b>Validation accuracy</b>", "<b>Smoothed loss per step</b>"))
    losses = []
    for i, (name, live, color) in enumerate(runs):
        epochs = live.get("epochs", [])
        # Plotly leaves a trace with no points out of the legend, so a run that stopped in its first
        # epoch (it diverged) is named by its loss curve.
        fig.add_scatter(x=[e["epoch"] for e in epochs], y=[e["val_acc"] for e in epochs], name=name,
                        legendgroup=str(i), mode="lines+markers", line={"color": color, "width": 3},
                        cliponaxis=False, showlegend=bool(epochs), row=1, col=1)
        curve = live.get("curve", {})
        loss = smooth(curve.get("loss", []))
        losses.append(loss)
        fig.add_scatter(x=curve.get("step", []), y=loss, name=name, legendgroup=str(i), mode="lines",
                        line={"color": color, "width": 2}, showlegend=not epochs, row=1, col=2)
    fig.update_xaxes(title_text="epoch", range=[0.5, most_epochs + 0.5], row=1, col=1,
                     **({"dtick": 1} if most_epochs <= 20 else {}))
    fig.update_yaxes(title_text="accuracy", tickformat=".0%", range=[0, 1], row=1, col=1)
    fig.update_xaxes(title_text="step", row=1, col=2)
    fig.update_yaxes(loss_axis(*losses), row=1, col=2)
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    fig.update_annotations(font_size=15, xanchor="left", x=0)  # titles flush left, as on the run's charts
    fig.layout.annotations[1].x = fig.layout.xaxis2.domain[0]
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0})
    return fig


def _by_layer(health: list[dict], field: str, key: str) -> dict[str, tuple[list, list]]:
    """layer -> (steps, values) of one health field (readings where it is set)."""
    out: dict[str, tuple[list, list]] = {}
    for reading in health:
        for layer, value in (reading.get(field) or {}).items():
            value = value.get(key) if isinstance(value, dict) else value
            if value is not None:
                steps, values = out.setdefault(layer, ([], []))
                steps.append(reading["step"])
                values.append(value)
    return out


def _log_range(series) -> list[float]:
    values = np.array([v for _, vs in series for v in vs if v and v > 0], dtype=float)
    if not len(values):
        return [-4.0, 1.0]
    return [float(np.floor(np.log10(values.min()))), float(np.ceil(np.log10(values.max())) + 0.01)]


def health_figures(health: list[dict], activation: str, total_steps: int) -> dict[str, dict]:
    """Why a network learns slowly, per layer, as it trains (recording.Health's readings): the
    share of units in the activation's flat tails (sigmoid, tanh) or dead (ReLU), how much each
    layer's outputs differ from one probe image to another, and the size of each layer's gradient."""
    xaxis = {"title": {"text": "step"}, "range": [0, max(total_steps, health[-1]["step"] if health else 1)]}
    key, what = ("dead", "Dead units (ReLU)") if activation == "relu" else ("saturated", "Saturated units")
    units = _by_layer(health, "layers", key)
    spread = _by_layer(health, "layers", "spread")
    grads = _by_layer(health, "grad", "")
    lines = lambda series, fmt=None: [{"type": "scatter", "x": s, "y": v, "name": name.removesuffix("_act"),
                                       "mode": "lines", "line": {"color": PALETTE[i % len(PALETTE)], "width": 2},
                                       "legendgroup": name.removesuffix("_act")}
                                      for i, (name, (s, v)) in enumerate(series.items())]
    # The legend under the chart: above it, it wrapped onto the title in a chart 300 pixels wide.
    below = {"margin": {**MARGIN, "b": 85}, "height": HEIGHT + 30,
             "legend": {"orientation": "h", "yanchor": "top", "y": -0.14, "xanchor": "left", "x": 0}}
    xaxis = {**xaxis, "title": {"text": ""}}  # "step", as above: the legend takes its place
    log = {"type": "log", "dtick": 1, "exponentformat": "power"}  # decades only: 10⁻³, 10⁻², ...
    return {
        "units": _figure(lines(units), what, xaxis, {"title": {"text": "share of units"}, "tickformat": ".0%",
                                                     "range": [0, 1]}, **below),
        "spread": _figure(lines(spread), "Difference between images", xaxis,
                          {"title": {"text": "spread"}, **log, "range": _log_range(spread.values())}, **below),
        "gradients": _figure(lines(grads), "Gradient size per layer", xaxis,
                             {"title": {"text": "weight gradient"}, **log, "range": _log_range(grads.values())},
                             **below),
    }
