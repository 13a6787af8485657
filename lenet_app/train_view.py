"""The Train page's logic: controls -> one TrainConfig, the layer table, the
curves of a run, the table and overlay of all runs, and checkpoint upload.

The pure functions here (config_from_controls, layer_table, downsample, ...)
take and return plain values; the few that touch st.session_state say so."""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np
import torch
import streamlit as st

from lenet_core.checkpoint import Checkpoint, CheckpointError, checkpoint_bytes, load_checkpoint
from lenet_core.data import ImageData
from lenet_core.model import MAX_CONV_LAYERS, MAX_DENSE_LAYERS, PRESETS, ConfigError, ModelConfig, layer_summary
from lenet_core.train import EpochMetrics, Snapshot, TrainConfig, TrainingJob, build_model

from . import live_chart, live_feed
from .state import (DATASET_LABELS, SessionRun, add_run, finished_checkpoint, get_data, missing_data_markdown,
                    session_runs)

# -- controls ------------------------------------------------------------------

LR_VALUES = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
EXTRA_CHANNELS = (6, 16, 32)      # what a conv layer starts with when it is added
EXTRA_WIDTHS = (120, 84, 64)
PREFIX = "train_"                 # widget keys are PREFIX + control name
CUSTOM = "custom"


def matching_preset(model: ModelConfig) -> str:
    return next((name for name, p in PRESETS.items() if p == model), CUSTOM)


def arch_controls(model: ModelConfig) -> dict:
    """Control values that show an architecture."""
    values = {"activation": model.activation, "pooling": model.pooling, "kernel_size": model.kernel_size,
              "padding": model.padding, "init": model.init,
              "conv_layers": len(model.conv_channels), "dense_layers": len(model.dense_widths)}
    for i in range(MAX_CONV_LAYERS):
        values[f"conv{i + 1}"] = model.conv_channels[i] if i < len(model.conv_channels) else EXTRA_CHANNELS[i]
    for i in range(MAX_DENSE_LAYERS):
        values[f"fc{i + 1}"] = model.dense_widths[i] if i < len(model.dense_widths) else EXTRA_WIDTHS[i]
    return values


def controls_from_config(config: TrainConfig) -> dict:
    """Control values that show a whole TrainConfig (the inverse of config_from_controls)."""
    return {"dataset": config.dataset, "preset": matching_preset(config.model), **arch_controls(config.model),
            "optimizer": config.optimizer, "lr": config.lr, "batch_size": config.batch_size,
            "epochs": config.epochs, "seed": config.seed, "device": config.device}


# The chapter's network and training setup: LeNet-5, Fashion-MNIST, batch 128, SGD lr 0.1, 10 epochs.
DEFAULTS = {**controls_from_config(TrainConfig()), "source": "new"}


def config_from_controls(values: dict) -> TrainConfig:
    """The one TrainConfig the controls describe. Channels and widths of layers
    beyond the chosen counts are ignored. Not validated: see config_problem."""
    v = {**DEFAULTS, **values}
    model = ModelConfig(
        activation=v["activation"], pooling=v["pooling"], kernel_size=int(v["kernel_size"]),
        padding=v["padding"], init=v["init"],
        conv_channels=tuple(int(v[f"conv{i + 1}"]) for i in range(int(v["conv_layers"]))),
        dense_widths=tuple(int(v[f"fc{i + 1}"]) for i in range(int(v["dense_layers"]))))
    return TrainConfig(model=model, dataset=v["dataset"], lr=float(v["lr"]), batch_size=int(v["batch_size"]),
                       epochs=int(v["epochs"]), optimizer=v["optimizer"], seed=int(v["seed"]),
                       device=v["device"])


def with_value(options, value) -> list:
    """A slider's options, with a value from a checkpoint added if it is not one of them."""
    return sorted(set(options) | {value})


# Widget state. Keys persist across pages (persist_state="session"); these
# callbacks change several controls at once and run before the page script.

def key(name: str) -> str:
    return PREFIX + name


def init_controls() -> None:
    for name, value in DEFAULTS.items():
        st.session_state.setdefault(key(name), value)


def current_controls() -> dict:
    return {name: st.session_state.get(key(name), default) for name, default in DEFAULTS.items()}


def set_controls(values: dict) -> None:
    for name, value in values.items():
        if name == "preset":
            set_preset(value)
        else:
            st.session_state[key(name)] = value


# The preset is the one control that the app moves by itself, to "custom" as soon as an
# architecture control no longer matches a preset. Its value lives under key("preset"), and its
# selectbox under a key that changes each time the app moves it. The browser sends every
# widget's value with each edit: an edit made before the page has drawn the move (two quick
# edits in a row) still carries the old preset, and under the one key that looked like the user
# picking it again, which applied the preset over both edits. Under the old selectbox's key the
# value is simply unchanged, so nothing happens.

def preset_widget_key() -> str:
    return key(f"preset_select_{st.session_state.get(key('preset_moves'), 0)}")


def set_preset(name: str) -> None:
    """Show `name` as the preset, without applying it."""
    if st.session_state.get(key("preset")) != name:
        st.session_state[key("preset")] = name
        st.session_state[key("preset_moves")] = st.session_state.get(key("preset_moves"), 0) + 1


def on_preset() -> None:
    """The user picked a preset: set every architecture control to it."""
    name = st.session_state[preset_widget_key()]
    st.session_state[key("preset")] = name
    if name in PRESETS:
        set_controls(arch_controls(PRESETS[name]))


def on_architecture() -> None:
    """After any architecture control moved: show which preset it now is, if any."""
    try:
        model = config_from_controls(current_controls()).model
    except (TypeError, ValueError):
        return
    set_preset(matching_preset(model))


def on_source() -> None:
    """Continuing from a checkpoint fixes the architecture and data set to its own."""
    run = session_runs().get(source_run_id(st.session_state[key("source")]))
    ckpt = finished_checkpoint(run) if run else None
    if ckpt is not None:
        set_controls({k: v for k, v in controls_from_config(ckpt.config).items() if k != "device"})


def source_labels() -> dict[str, str]:
    """'new' and the key of every run of the session with weights to continue from, with their labels."""
    labels = {"new": "new weights (random, from the seed)"}
    labels.update({run.key: f"continue from {run.name}" for run in session_runs().values()
                   if finished_checkpoint(run) is not None})
    return labels


def source_run_id(source: str) -> int | None:
    return int(source.split(":")[1]) if source and source.startswith("run:") else None


# -- the network ---------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def layer_table(model: ModelConfig) -> list[dict]:
    """One row per layer (name, type, output shape without the batch, parameters)
    ending with the total. Raises ConfigError for a network that cannot be built."""
    model.validate()
    return [dict(row) for row in _layer_rows(model)]


@functools.lru_cache(maxsize=64)
def _layer_rows(model: ModelConfig) -> tuple[dict, ...]:
    # Building the network and pushing a batch through it takes the server's CPU, at every
    # rerun of the page, and during a run from the training threads: once per architecture.
    rows = [{"layer": r.name, "type": r.kind, "output shape": "×".join(map(str, r.output_shape[1:])),
             "parameters": r.parameters} for r in layer_summary(model)]
    rows.append({"layer": "total", "type": "", "output shape": "", "parameters": sum(r["parameters"] for r in rows)})
    return tuple(rows)


def config_problem(config: TrainConfig) -> ConfigError | None:
    try:
        config.validate()  # the model's settings too: no network needs building to know
    except ConfigError as e:
        return e
    return None


# -- starting runs and checkpoints ------------------------------------------------

def read_checkpoint(data: bytes) -> tuple[Checkpoint | None, str | None]:
    """(checkpoint, None), or (None, why the bytes are not a usable checkpoint)."""
    try:
        return load_checkpoint(bytes(data)), None
    except CheckpointError as e:
        return None, str(e)
    except Exception as e:  # anything else a broken file can raise: still a message, never a traceback
        return None, f"the uploaded file is not a LeNet Lab checkpoint ({type(e).__name__})"


def add_uploaded_checkpoint(data: bytes, filename: str) -> tuple[SessionRun | None, str | None]:
    """Keep an uploaded checkpoint as a run of the session (to compare, download
    and continue training from); or say why it was refused."""
    ckpt, error = read_checkpoint(data)
    if ckpt is None:
        return None, f"**{filename}** was not loaded: {error}"
    ckpt.model.eval().requires_grad_(False)  # the upload itself is never trained; runs continue from a copy
    return add_run(ckpt.config, checkpoint=ckpt, name=f"{filename} (uploaded)"), None


def start_run(config: TrainConfig, data: ImageData, source: Checkpoint | None = None,
              source_name: str = "") -> SessionRun:
    """Start training in a background thread; the run is kept in the session."""
    model = build_model(config)
    if source is not None:
        if source.config.model != config.model:
            raise ConfigError("source", "the architecture differs from the checkpoint's; pick 'new weights'")
        model.load_state_dict(source.model.state_dict())
    job = TrainingJob(config, data=data, model=model)
    run = add_run(config, job)
    job.name = run.name
    origins = st.session_state.setdefault(PREFIX + "origins", {})
    origins[run.id] = source_name or "new"
    st.session_state[PREFIX + "current"] = run.id
    job.start()
    return run


def run_origin(run: SessionRun) -> str:
    if run.job is None:
        return "upload"
    return st.session_state.get(PREFIX + "origins", {}).get(run.id, "new")


def safe_filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


# -- curves ----------------------------------------------------------------------

# About one point per two pixels of a wide loss chart: the browser's time at each redraw
# grows with the points drawn, and on a small machine it comes out of training.
# benchmarks/chart_redraw.py (the step chart redrawn twice a second in Chromium here):
# 0.045 cores with 250 points per curve, 0.051 with 500, 0.056 with 1,000, 0.002 idle.
# At 500 the curves look the same as at 1,000.
MAX_POINTS = 500


def ema(values, decay: float = 0.9) -> np.ndarray:
    """Exponential moving average, debiased like TensorBoard's (no drag towards 0 at
    the start). Vectorised in blocks short enough that decay**-block stays finite."""
    values = np.asarray(values, dtype=float)
    if decay <= 0 or len(values) == 0:
        return values.copy()
    block = max(1, int(300 / -math.log(decay)))
    out = np.empty_like(values)
    carry = 0.0
    for start in range(0, len(values), block):
        x = values[start:start + block]
        powers = decay ** np.arange(1, len(x) + 1)  # acc_j = d^(j+1) carry + (1-d) sum_i d^(j-i) x_i
        out[start:start + len(x)] = powers * (carry + (1 - decay) * np.cumsum(x / powers))
        carry = out[start + len(x) - 1]
    return out / (1 - decay ** np.arange(1, len(values) + 1))


def downsample(x, *ys, max_points: int = MAX_POINTS):
    """Every k-th point (always keeping the last), so at most max_points are drawn."""
    x = np.asarray(x)
    if len(x) <= max_points:
        return (x, *map(np.asarray, ys))
    idx = np.unique(np.append(np.linspace(0, len(x) - 1, max_points - 1).astype(int), len(x) - 1))
    return (x[idx], *(np.asarray(y)[idx] for y in ys))


def smoothing(total_steps: int) -> float:
    """EMA decay averaging over about 1% of a run's steps (between 1 and 50 steps),
    so short and long runs both show a trend without a lag."""
    window = min(max(total_steps / 100, 1.0), 50.0)
    return 1 - 1 / window


def step_curve(steps: list[tuple[int, float]], total_steps: int | None = None, max_points: int | None = None):
    """(step, raw loss, smoothed loss), downsampled; the EMA is taken over every step first."""
    if not steps:
        return np.array([]), np.array([]), np.array([])
    s, loss = np.array(steps, dtype=float).T
    return downsample(s, loss, ema(loss, smoothing(total_steps or len(steps))), max_points=max_points or MAX_POINTS)


# Live figures are plain Plotly specs (dicts); st.plotly_chart validates them once,
# as it would a go.Figure's. A step chart of 2,000 points takes about 4 ms of the
# server's time to build, validate and serialise, at every redraw.
#
# Their margins and y ranges are fixed here, not left to Plotly: on every redraw its
# automatic margins measure each label and its autorange picks new ticks, which was
# about a sixth of the browser's CPU time while the panel streams (Chromium used 0.237
# cores with them and 0.201 without, medians of 5 alternating windows of
# benchmarks/streaming_cost.py's panel), CPU that training on the same small machine
# pays for.
LIVE_MARGIN = {"l": 60, "r": 10, "t": 50, "b": 45}
EPOCH_MARGIN = {**LIVE_MARGIN, "t": 70}  # the epoch charts: room for the loss chart's legend under its title


def _figure(traces: list[dict], title: str, height: int, xaxis: dict, yaxis: dict, **layout) -> dict:
    return {"data": traces, "layout": {
        "title": {"text": title, "yref": "container", "y": 1, "yanchor": "top", "pad": {"t": 14}},
        "height": height, "margin": LIVE_MARGIN,
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1},
        "xaxis": {**xaxis, "automargin": False}, "yaxis": {**yaxis, "automargin": False}} | layout}


def loss_axis(*series) -> dict:
    """A y axis from 0 to a little above the largest finite value of `series`; Plotly's
    own autorange (from 0) when there is none, e.g. before the first step or after a
    run diverged to NaN from its first step."""
    values = np.concatenate([np.asarray(s, dtype=float).ravel() for s in series]) if series else np.array([])
    values = values[np.isfinite(values)]
    axis = {"title": {"text": "loss"}, "rangemode": "tozero"}
    if len(values) and values.max() > 0:
        axis["range"] = [0.0, float(values.max()) * 1.05]
    return axis


def step_figure(steps: list[tuple[int, float]], total_steps: int, max_points: int | None = None) -> dict:
    step, raw, smooth = step_curve(steps, total_steps, max_points)
    return _figure(
        [{"type": "scatter", "x": step, "y": raw, "name": "loss per step", "mode": "lines",
          "line": {"width": 1}, "opacity": 0.3, "hoverinfo": "skip"},
         {"type": "scatter", "x": step, "y": smooth, "name": "smoothed", "mode": "lines", "line": {"width": 3}}],
        "Training loss per step", 320,
        xaxis={"title": {"text": "step"}, "range": [0, max(total_steps, len(steps), 1)]},
        yaxis=loss_axis(raw, smooth))


def epoch_figures(epochs: list[EpochMetrics], total_epochs: int) -> tuple[dict, dict]:
    x = [m.epoch for m in epochs]
    xaxis = {"title": {"text": "epoch"}, "range": [0.5, total_epochs + 0.5]}
    if total_epochs <= 20:
        xaxis["dtick"] = 1
    train_loss, val_loss = [m.train_loss for m in epochs], [m.val_loss for m in epochs]
    loss = _figure(
        [{"type": "scatter", "x": x, "y": train_loss, "name": "train", "mode": "lines+markers"},
         {"type": "scatter", "x": x, "y": val_loss, "name": "validation", "mode": "lines+markers"}],
        "Loss per epoch", 320, xaxis, loss_axis(train_loss, val_loss),
        # The legend on a line of its own under the title: beside it, on a chart half the panel
        # wide, the two ran into each other.
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "left", "x": 0},
        margin=EPOCH_MARGIN)
    acc = _figure(
        [{"type": "scatter", "x": x, "y": [m.val_acc for m in epochs], "name": "validation",
          "mode": "lines+markers", "line": {"width": 3}, "cliponaxis": False}],  # 100% is drawn whole
        "Validation accuracy", 320, xaxis, {"title": {"text": "accuracy"}, "tickformat": ".0%", "range": [0, 1]},
        showlegend=False, margin=EPOCH_MARGIN)  # the plot as tall as the loss chart's beside it
    return loss, acc


def total_steps(config: TrainConfig, data: ImageData | None) -> int:
    """Optimizer steps a run of `config` will take on `data` (0 when there is no data)."""
    return config.steps_per_epoch(len(data.train_images)) * config.epochs if data is not None else 0


# How often the live panel redraws while a run trains: twice a second, on the CPU too.
# Each redraw takes browser CPU time that a run on a small machine's CPU pays for
# (benchmarks/train_page_overhead.py); what keeps that small is the charts updating in
# place (live_chart) rather than a slower refresh.
REFRESH_SECONDS = 0.5


def still_progress_bars() -> None:
    """Streamlit animates a progress bar's width for a moment after every update. Twice a
    second, on the 2-core build machine, that animation alone kept Chromium busy for about 7%
    of a core, taken from training; with this style on the page the bar jumps instead. Sent
    once per page run, not by the fragment that redraws the live panel."""
    st.html('<style>[data-testid="stProgress"] * {transition: none !important;}</style>')


def curve_figures(steps: list[tuple[int, float]], epochs: list[EpochMetrics], steps_total: int,
                  epochs_total: int) -> dict[str, dict]:
    """The panel's charts by name, in page order."""
    loss_fig, acc_fig = epoch_figures(epochs, epochs_total)
    return {"loss-per-step": step_figure(steps, steps_total), "loss-per-epoch": loss_fig, "val-accuracy": acc_fig}


def show_curves(steps: list[tuple[int, float]], epochs: list[EpochMetrics], steps_total: int,
                epochs_total: int) -> None:
    """The panel's charts as they stand: loss per step on top, loss and accuracy per epoch below.
    The browser keeps them from one page run to the next and updates them in place
    (live_chart); where it cannot, they are drawn with st.plotly_chart."""
    figures = curve_figures(steps, epochs, steps_total, epochs_total)
    if live_chart.available():
        live_chart.live_panel(live_chart.panel_payload(figures))
        return
    st.plotly_chart(figures["loss-per-step"], theme="streamlit")
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures["loss-per-epoch"], theme="streamlit")
    c2.plotly_chart(figures["val-accuracy"], theme="streamlit")


def panel_json(snap: Snapshot, ended: bool) -> str:
    """What the browser's live panel draws while `snap`'s run trains (lenet_app.live_feed)."""
    figures = curve_figures(snap.steps, snap.epochs, snap.total_steps, snap.config.epochs)
    return live_chart.panel_payload(figures, round(snap.progress, 5), progress_text(snap), ended)


def show_live_panel(run: SessionRun) -> bool:
    """Draw the panel of the live `run` fed by a file (lenet_app.live_feed), so the page does
    not rerun to redraw it; False where that cannot work here (no static folder it can write):
    then the caller redraws the panel with a fragment."""
    folder = live_chart.static_dir() if live_chart.available() else None
    feed = folder and live_feed.feed_for(run.job, folder / live_feed.FOLDER, panel_json, REFRESH_SECONDS)
    if not feed:
        return False
    live_chart.live_panel(panel_json(run.job.snapshot(), False), f"{live_feed.FOLDER}/{feed.name}", REFRESH_SECONDS)
    return True


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def mean_rate(epochs: list[EpochMetrics]) -> float | None:
    return sum(m.samples_per_s for m in epochs) / len(epochs) if epochs else None


def progress_text(snap: Snapshot) -> str:
    total_epochs = snap.config.epochs
    if snap.status == "loading":
        return f"Loading the data set… · {snap.device}"
    parts = [f"Epoch {max(snap.epoch, 1)} of {total_epochs}", f"step {snap.step:,} of {snap.total_steps:,}"]
    if snap.status in ("running", "paused"):
        parts += [f"{snap.samples_per_s:,.0f} samples/s" if snap.samples_per_s else "measuring speed…",
                  f"ETA {duration(snap.eta_s)}" if snap.status == "running" else "paused"]
    parts.append(snap.device)
    return " · ".join(parts)


def summary_text(snap: Snapshot) -> str:
    """The line under a run that has ended: what it reached and how fast."""
    parts = [f"{len(snap.epochs)} of {snap.config.epochs} epochs in {duration(snap.elapsed_s)}"]
    if snap.epochs:
        parts.append(f"validation accuracy **{snap.epochs[-1].val_acc:.1%}**")
        parts.append(f"{mean_rate(snap.epochs):,.0f} samples/s on average")
    parts.append(snap.device)
    return " · ".join(parts)


# -- all runs of the session ----------------------------------------------------------

SETTING_LABELS = {
    "dataset": "data set", "activation": "activation", "pooling": "pooling", "kernel_size": "kernel",
    "padding": "padding", "conv_channels": "conv channels", "dense_widths": "dense widths", "init": "init",
    "optimizer": "optimizer", "lr": "lr", "batch_size": "batch", "seed": "seed",
    "device": "device", "start": "start",
}
# The planned number of epochs is not a column of its own: the "epochs" column shows it next to
# how many a run has trained ("55 of 200"), which is what differs between a stopped run and a finished one.


def flat_settings(config: TrainConfig) -> dict[str, str]:
    d = {**config.model.to_dict(), **{k: v for k, v in config.to_dict().items() if k != "model"}}
    d.pop("num_classes"), d.pop("in_channels"), d.pop("image_size")
    d["conv_channels"] = ", ".join(map(str, d["conv_channels"]))
    d["dense_widths"] = ", ".join(map(str, d["dense_widths"])) or "none"
    d["dataset"] = DATASET_LABELS.get(d["dataset"], d["dataset"])
    d["lr"] = f"{d['lr']:g}"
    return {k: str(v) for k, v in d.items()}


def differing_settings(settings: list[dict[str, str]]) -> list[str]:
    """The settings whose values are not all the same, in SETTING_LABELS order."""
    return [k for k in SETTING_LABELS if len({s.get(k) for s in settings}) > 1]


@dataclass
class RunView:
    """What the table and the overlay need from a run, live, finished or uploaded."""

    run: SessionRun
    status: str
    epochs: list[EpochMetrics]
    steps: list[tuple[int, float]]
    elapsed_s: float | None
    settings: dict[str, str]


def run_view(run: SessionRun) -> RunView:
    settings = {**flat_settings(run.config), "start": run_origin(run)}
    if run.job is not None:
        snap = run.job.snapshot()
        return RunView(run, snap.status, snap.epochs, snap.steps, snap.elapsed_s, settings)
    ckpt = run.checkpoint
    return RunView(run, "uploaded", ckpt.epochs, ckpt.steps, ckpt.metrics.get("train_time_s"), settings)


def runs_table(views: list[RunView]) -> list[dict]:
    """One row per run: name, status, the settings that differ between runs, results.
    Results are text, "–" for a run with no finished epoch (a table shows a missing
    number as "None")."""
    columns = differing_settings([v.settings for v in views])
    rows = []
    for v in views:
        last = v.epochs[-1] if v.epochs else None
        rate = mean_rate(v.epochs)
        rows.append({"run": v.run.name, "status": v.status,
                     **{SETTING_LABELS[c]: v.settings[c] for c in columns},
                     "val accuracy": f"{last.val_acc:.1%}" if last else "–",
                     "epochs": f"{len(v.epochs)} of {v.settings['epochs']}",
                     "samples/s": f"{rate:,.0f}" if rate else "–",
                     "time": duration(v.elapsed_s)})
    return rows


# The overlay is drawn once per page run, not streamed: its smoothed curves share a
# larger budget than a live curve's.
OVERLAY_POINTS = 1000


def compare_figure(views: list[RunView]) -> dict:
    """Validation accuracy per epoch and smoothed loss per step of several runs, overlaid: one
    figure, two panels side by side, one legend (a click on a run hides it in both)."""
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
    most_epochs = max([len(v.epochs) for v in views] + [1])
    traces = []
    for i, v in enumerate(views):
        color = palette[i % len(palette)]
        traces.append({"type": "scatter", "x": [m.epoch for m in v.epochs], "y": [m.val_acc for m in v.epochs],
                       "name": v.run.name, "legendgroup": str(v.run.id), "mode": "lines+markers",
                       "line": {"color": color, "width": 3}, "cliponaxis": False, "xaxis": "x", "yaxis": "y"})
        step, _, smooth = step_curve(v.steps, max_points=max(OVERLAY_POINTS // max(len(views), 1), 100))
        traces.append({"type": "scatter", "x": step, "y": smooth, "name": v.run.name, "legendgroup": str(v.run.id),
                       "mode": "lines", "line": {"color": color, "width": 2}, "showlegend": False,
                       "xaxis": "x2", "yaxis": "y2"})

    def panel_title(text: str, x: float) -> dict:  # the live charts' titles: bold, on the left
        return {"text": f"<b>{text}</b>", "x": x, "xref": "paper", "xanchor": "left", "y": 1.02, "yref": "paper",
                "yanchor": "bottom", "showarrow": False, "font": {"size": 15}}

    return {"data": traces, "layout": {
        "height": 420, "margin": {"l": 10, "r": 10, "t": 40, "b": 10},  # grown to fit ticks, titles, legend
        "xaxis": {"domain": [0, 0.45], "anchor": "y", "title": {"text": "epoch"}, "automargin": True,
                  "range": [0.5, most_epochs + 0.5], **({"dtick": 1} if most_epochs <= 20 else {})},
        "yaxis": {"anchor": "x", "title": {"text": "accuracy"}, "tickformat": ".0%", "range": [0, 1],
                  "automargin": True},
        "xaxis2": {"domain": [0.55, 1], "anchor": "y2", "title": {"text": "step"}, "automargin": True},
        "yaxis2": {"anchor": "x2", "title": {"text": "loss"}, "rangemode": "tozero", "automargin": True},
        # Short titles: each panel is under 250 pixels wide when the window is 1024.
        "annotations": [panel_title("Validation accuracy", 0), panel_title("Smoothed loss per step", 0.55)],
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0}}}


# -- what the page needs from the session ------------------------------------------------

PRESET_LABELS = {"classic": "classic: the chapter's LeNet-5", "modern": "modern: ReLU + max pooling",
                 CUSTOM: "custom"}
POOLING_LABELS = {"avg": "average", "max": "max"}
OPTIMIZER_LABELS = {"sgd": "SGD", "momentum": "SGD + momentum 0.9", "adam": "Adam"}
STATUS_LABELS = {"loading": "loading data", "running": "training", "paused": "paused", "finished": "finished",
                 "stopped": "stopped", "diverged": "diverged", "failed": "failed"}
ARCH_SETTINGS = ("activation", "pooling", "init", "padding", "conv_channels", "dense_widths", "kernel_size",
                 "num_classes")


def device_options() -> list[str]:
    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def current_run() -> SessionRun | None:
    """The run shown in the big panel: the last one started on this page."""
    return session_runs().get(st.session_state.get(PREFIX + "current"))


def run_status(job: TrainingJob) -> str:
    """The status a heading shows: 'training' or 'paused' while the job lives (it
    changes only on a click, which redraws the page), else how it ended."""
    if job.alive:
        return "paused" if job.control.paused else "training"
    return STATUS_LABELS.get(job.snapshot().status, job.snapshot().status)


def live_run() -> SessionRun | None:
    return next((r for r in session_runs().values() if r.job is not None and r.job.alive), None)


def check_source() -> None:
    """A 'start from' that no longer exists (e.g. a new session) falls back to new weights."""
    if st.session_state.get(key("source")) not in source_labels():
        st.session_state[key("source")] = "new"


def on_upload() -> None:
    f = st.session_state.get(key("upload"))
    st.session_state[PREFIX + "upload_message"] = None
    if f is None:
        return
    run, error = add_uploaded_checkpoint(f.getvalue(), f.name)
    if error:
        st.session_state[PREFIX + "upload_message"] = ("error", error)
        return
    st.session_state[key("source")] = run.key
    on_source()
    acc = run.checkpoint.metrics.get("test_accuracy")
    st.session_state[PREFIX + "upload_message"] = (
        "ok", f"Loaded **{f.name}** ({DATASET_LABELS.get(run.config.dataset, run.config.dataset)}"
              + (f", {acc:.1%} accuracy" if acc is not None else "")
              + "). Press **Start training** to continue training it; it is also listed under Runs.")


def on_start() -> None:
    """The Start button: one TrainConfig from the controls, into a background job."""
    if live_run() is not None:
        return
    values = current_controls()
    config = config_from_controls(values)
    data, _ = get_data(config.dataset)
    if data is None or config_problem(config) is not None:
        return
    source = session_runs().get(source_run_id(values["source"]))
    try:
        start_run(config, data, finished_checkpoint(source) if source else None, source.name if source else "")
    except ConfigError as e:
        st.session_state[PREFIX + "start_error"] = str(e)


def status_message(snap: Snapshot) -> None:
    """How a run ended, in words, with what to do about it."""
    if snap.status == "finished":
        st.success(summary_text(snap), icon=":material/check_circle:")
    elif snap.status == "stopped":
        st.info(f"{snap.message} {summary_text(snap)}", icon=":material/stop_circle:")
    elif snap.status == "diverged":
        st.error(snap.message, icon=":material/trending_up:")
    else:
        st.error(missing_data_markdown(snap.message) if "data set is not available" in snap.message
                 else f"Training failed: {snap.message}", icon=":material/error:")


def sync_compare(run_ids: list[int]) -> None:
    """Tick each run in the overlay once, when it first appears; untick dropped ones."""
    seen = st.session_state.setdefault(PREFIX + "compare_seen", set())
    chosen = [i for i in st.session_state.get(key("compare"), []) if i in run_ids]
    chosen += [i for i in run_ids if i not in seen]
    seen.update(run_ids)
    st.session_state[key("compare")] = chosen


def checkpoint_data(run: SessionRun):
    """Bytes of the run's checkpoint, made only when the button is pressed."""
    return lambda: checkpoint_bytes(finished_checkpoint(run))


def checkpoint_name(run: SessionRun) -> str:
    c = run.config
    return safe_filename(f"lenet-{run.name.removesuffix(' (uploaded)').removesuffix('.pt')}-"
                         f"{matching_preset(c.model)}-{c.dataset}") + ".pt"
