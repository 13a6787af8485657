"""The epoch scrubber: a recorded run's conv maps and filters for one probe image, replayed epoch by
epoch with a slider (from probes.pt, which a run writes at epoch 0 and at each epoch's end). One
colour scale per layer for all epochs, so what changes on screen is the network, not the scale."""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from lenet_core.probes import load_probes

from . import maps


@st.cache_resource(show_spinner=False, max_entries=6)
def _probes(path: str, modified: int) -> dict | None:
    try:
        return load_probes(path)
    except (ValueError, OSError):
        return None


def probes_of(run_path: Path) -> dict | None:
    """The run's probes.pt, read once per version of the file; None where it has none."""
    path = Path(run_path) / "probes.pt"
    try:
        return _probes(str(path), os.stat(path).st_mtime_ns)
    except OSError:
        return None


def show(run_path: Path, classes, key: str, width_px: int = 1000) -> bool:
    """The scrubber of a run; False (and nothing drawn) when the run has no recording."""
    probes = probes_of(run_path)
    if probes is None or not probes["epochs"]:
        return False
    epochs = list(probes["epochs"])
    labels = probes["labels"].tolist()
    c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
    if st.session_state.get(f"{key}.epoch") not in epochs:
        st.session_state[f"{key}.epoch"] = epochs[-1]
    epoch = c1.select_slider("Epoch", epochs, key=f"{key}.epoch",
                             help="0 is before training. Drag to watch the filters and maps form, epoch by epoch.")
    image = c2.selectbox("Probe image", range(len(labels)), key=f"{key}.image",
                         format_func=lambda i: f"{i + 1}: {classes[labels[i]]}",
                         help="Two test images per class, the same for every run on this data set.")
    e = epochs.index(epoch)
    stride = probes.get("stride", 1)
    note = f" (every {stride}th epoch kept, and the latest)" if stride > 1 else ""
    st.caption(f"Epoch {epoch} of the {len(epochs)} recorded{note}. Above each map: its filter "
               f"(red positive weights, blue negative).")
    left, right = st.columns([1, 6], vertical_alignment="top")
    left.image(maps.upscale(probes["images"][image].numpy() / 255.0, 4), width=112, clamp=True,
               caption=classes[labels[image]])
    with right:
        for layer in probes["layers"]:
            series = probes[layer][:, image].float().numpy()         # (epochs, C, H, W)
            m = series[e]
            filters = probes["filters"][layer][e].float().numpy()  # (C, in, k, k)
            kept, total = probes["channels"][layer]["kept"], probes["channels"][layer]["total"]
            diverging = float(series.min()) < 0
            lo, hi = float(series.min()), float(series.max())
            st.markdown(f"**{layer}**: {m.shape[0]} maps of {m.shape[1]}x{m.shape[2]}"
                        + (f" (the first {kept} of {total})" if kept < total else ""))
            st.plotly_chart(maps.map_grid(m, filters=filters.mean(axis=1), ncols=maps.grid_shape(m.shape[0], 8)[1],
                                          width_px=width_px, diverging=diverging,
                                          value_range=(lo, hi if hi > lo else lo + 1)),
                            theme="streamlit", config={"displayModeBar": False}, key=f"{key}.{layer}")
    return True
