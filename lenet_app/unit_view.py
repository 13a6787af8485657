"""The Activations page's "one value, explained": click a value of a map and see how it is made from
the layer before (lenet_core.explain): the input window of each input channel, the kernel, their
products, the sum, the bias and the activation; a pooling window; a dense unit's largest inputs."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from lenet_core.activations import activations
from lenet_core.explain import ExplainError, explain, layers

from .maps import DIVERGING, FONT, HIGHLIGHT, SEQUENTIAL

ss = st.session_state
CELL_PX = 26      # one value of the clickable map
GRID_PX = 190     # one window, kernel or products grid with its numbers


def _label(name: str) -> str:
    if name.endswith("_pool"):
        return f"{name} (pooling)"
    return f"{name} (dense)" if name.startswith("fc") else ("output (logits)" if name == "output" else f"{name} (conv)")


def clickable_map(values: np.ndarray, at: tuple[int, int] | None, title: str) -> go.Figure:
    """A map whose values can be clicked: a heatmap draws it, and an invisible point over each cell
    takes the click (Streamlit selects scatter points, not heatmap cells); the picked one is outlined."""
    h, w = values.shape
    rows, cols = np.mgrid[0:h, 0:w]
    px = max(CELL_PX * max(h, w), 220)
    fig = go.Figure([go.Heatmap(z=values, colorscale=SEQUENTIAL, showscale=False, hoverinfo="skip"),
                     go.Scatter(x=cols.ravel(), y=rows.ravel(), mode="markers", customdata=values.ravel(),
                                marker={"size": 6, "opacity": 0}, selected={"marker": {"opacity": 0}},
                                unselected={"marker": {"opacity": 0}}, showlegend=False,
                                hovertemplate="row %{y}, col %{x}: %{customdata:.4f}<extra></extra>")])
    if at is not None:
        r, c = at
        fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                      line={"color": HIGHLIGHT, "width": 4})
    fig.update_xaxes(range=[-0.5, w - 0.5], showgrid=False, zeroline=False, title_text="col", constrain="domain")
    fig.update_yaxes(range=[h - 0.5, -0.5], showgrid=False, zeroline=False, title_text="row", scaleanchor="x")
    fig.update_layout(width=px + 70, height=px + 80, margin={"l": 50, "r": 10, "t": 40, "b": 40},
                      title={"text": title, "font": {"size": FONT}}, clickmode="event+select", dragmode=False,
                      plot_bgcolor="rgba(0,0,0,0)")
    return fig


def _number(v: float) -> str:
    text = f"{v:.2f}"
    return "" if np.isnan(v) else "0.00" if text == "-0.00" else text


def _grid(values, title: str, diverging: bool = True):
    values = np.asarray(values, dtype=float)
    limit = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    return go.Heatmap(z=values, text=np.vectorize(_number)(values), texttemplate="%{text}",
                      textfont={"size": 12}, colorscale=DIVERGING if diverging else SEQUENTIAL, showscale=False,
                      zmin=-limit if diverging else None, zmax=limit if diverging else None, name=title,
                      hovertemplate="%{z:.5f}<extra>" + title + "</extra>", xgap=1, ygap=1)


def conv_figure(e: dict) -> go.Figure:
    """Per input channel: the window it reads, the kernel, and their products (with numbers)."""
    n = len(e["window"])
    fig = make_subplots(rows=n, cols=3, horizontal_spacing=0.04, vertical_spacing=0.25 / n,
                        subplot_titles=[t for ch in range(n) for t in (
                            f"input channel {ch}: window", "× kernel", f"= products (sum {e['channel_sums'][ch]:.3f})")])
    for ch in range(n):
        window = np.where(np.asarray(e["inside"]), np.asarray(e["window"][ch]), np.nan)  # padding: blank
        fig.add_trace(_grid(window, "window", diverging=False), row=ch + 1, col=1)
        fig.add_trace(_grid(e["kernel"][ch], "kernel"), row=ch + 1, col=2)
        fig.add_trace(_grid(e["products"][ch], "products"), row=ch + 1, col=3)
    fig.update_yaxes(autorange="reversed", showticklabels=False, ticks="", showgrid=False, zeroline=False)
    fig.update_xaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False)
    fig.update_annotations(font_size=13)
    fig.update_layout(height=GRID_PX * n + 40, margin={"l": 5, "r": 5, "t": 30, "b": 5})
    return fig


def input_maps(source: np.ndarray, e: dict) -> go.Figure:
    """The input maps the value reads, with its window outlined on each."""
    n = len(source)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.04, vertical_spacing=0.3 / rows,
                        subplot_titles=[f"channel {i}" if n > 1 else e["input"] for i in range(n)])
    top, left = e["window_origin"]
    size = e.get("kernel_size", 2)
    for i in range(n):
        r, c = i // cols + 1, i % cols + 1
        fig.add_trace(go.Heatmap(z=source[i], colorscale="gray" if e["input"] == "input" else SEQUENTIAL,
                                 showscale=False, hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra></extra>"),
                      row=r, col=c)
        fig.add_shape(type="rect", x0=left - 0.5, x1=left + size - 0.5, y0=top - 0.5, y1=top + size - 0.5,
                      line={"color": HIGHLIGHT, "width": 3}, row=r, col=c)
    fig.update_yaxes(autorange="reversed", showticklabels=False, ticks="", showgrid=False, zeroline=False)
    fig.update_xaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False)
    fig.update_annotations(font_size=13)
    width = 110 * cols
    fig.update_layout(height=rows * (width / cols) + 40, width=width, margin={"l": 5, "r": 5, "t": 30, "b": 5})
    return fig


def _clicked(event) -> tuple[int, int] | None:
    points = (event or {}).get("selection", {}).get("points") or []
    if points:
        return int(points[0]["y"]), int(points[0]["x"])
    return None


def show(model, x, key: str = "act.unit") -> None:
    """The section: pick a layer and channel, click a value of its map, read how it is computed."""
    st.subheader(":material/calculate: One value, explained", divider="gray")
    if len(x) != 1:
        st.info("Pick one test image (not an average) to see how a value is computed.")
        return
    names = layers(model)
    acts = activations(model, x)
    acts["input"] = x
    c1, c2, _ = st.columns([1.2, 1, 2.5])
    layer = c1.selectbox("Layer", names, index=names.index("conv2") if "conv2" in names else 0,
                         format_func=_label, key=f"{key}.layer")
    out = acts.get(f"{layer}_act", acts[layer])[0]  # a conv's or dense layer's value after its activation
    if ss.get(f"{key}.unit", 0) >= out.shape[0]:  # another layer, with fewer channels
        ss[f"{key}.unit"] = 0
    unit = c2.number_input("Channel" if out.dim() == 3 else "Unit", 0, out.shape[0] - 1, 0, key=f"{key}.unit")
    at = None
    left, right = st.columns([1, 1.9], gap="medium")
    if out.dim() == 3:
        values = out[unit].numpy()
        stored = ss.get(f"{key}.at")
        if not (stored and stored[0] < values.shape[0] and stored[1] < values.shape[1]):
            stored = tuple(int(v) for v in np.unravel_index(values.argmax(), values.shape))
        with left:
            st.caption("Click a value of the map.")
            event = st.plotly_chart(clickable_map(values, stored, f"{layer}[{unit}], {values.shape[0]}x{values.shape[1]}"),
                                    on_select="rerun", selection_mode="points", key=f"{key}.map",
                                    config={"displayModeBar": False}, theme=None)
        clicked = _clicked(event)
        at = clicked if clicked and clicked[0] < values.shape[0] and clicked[1] < values.shape[1] else stored
        if at != stored:
            ss[f"{key}.at"] = at
            st.rerun()  # draw the map again with the new cell outlined
        ss[f"{key}.at"] = at
    try:
        e = explain(model, x, layer, int(unit), at)
    except ExplainError as err:
        st.warning(str(err))
        return
    with right:
        explanation(e)
    if e["kind"] in ("conv", "pool"):
        source = acts[e["input"]][0].numpy()
        if e["kind"] == "pool":
            source = source[unit:unit + 1]
        with left:
            st.caption(f"Where it reads: the window on {e['input']}" + (" (every channel)" if len(source) > 1 else ""))
            st.plotly_chart(input_maps(source, e), config={"displayModeBar": False}, theme=None,
                            key=f"{key}.inputs")


def explanation(e: dict) -> None:
    if e["kind"] == "conv":
        k = e["kernel_size"]
        top, left = e["window_origin"]
        st.markdown(f"**{e['layer']}[{e['channel']}] at row {e['at'][0]}, col {e['at'][1]}** reads a {k}×{k} window "
                    f"of **{e['input']}** (rows {top} to {top + k - 1}, cols {left} to {left + k - 1}) in each of its "
                    f"{len(e['window'])} channel{'s' * (len(e['window']) != 1)}, multiplies it by the kernel, and adds "
                    "everything up." + (" Blank cells are padding (zeros)." if not all(map(all, e["inside"])) else ""))
        sums = " + ".join(f"{v:.3f}" for v in e["channel_sums"]) if len(e["channel_sums"]) > 1 else None
        st.markdown(
            f"| step | value |\n|---|---|\n"
            f"| sum of the {len(e['window']) * k * k} products | {e['sum']:.4f}"
            + (f" (by channel: {sums})" if sums else "") + " |\n"
            f"| + bias | {e['bias']:.4f} |\n| = pre-activation | **{e['pre_activation']:.4f}** |\n"
            f"| {e['activation']}: {e['formula']} | **{e['value']:.4f}** (the map's value) |")
        with st.container(height=min(600, GRID_PX * len(e["window"]) + 50), border=False):
            st.plotly_chart(conv_figure(e), config={"displayModeBar": False}, theme=None, key="act.unit.conv")
    elif e["kind"] == "pool":
        st.markdown(f"**{e['layer']}[{e['channel']}] at row {e['at'][0]}, col {e['at'][1]}** is the "
                    f"**{'average' if e['pooling'] == 'avg' else 'max'}** of a 2×2 window of **{e['input']}[{e['channel']}]** "
                    f"(rows {e['window_origin'][0]}-{e['window_origin'][0] + 1}, cols {e['window_origin'][1]}-"
                    f"{e['window_origin'][1] + 1}).")
        fig = go.Figure(_grid(e["window"], "window", diverging=False))
        fig.update_yaxes(autorange="reversed", showticklabels=False)
        fig.update_xaxes(showticklabels=False)
        fig.update_layout(width=GRID_PX, height=GRID_PX, margin={"l": 5, "r": 5, "t": 5, "b": 5})
        st.plotly_chart(fig, config={"displayModeBar": False}, theme=None, key="act.unit.pool")
        st.markdown(f"{'average' if e['pooling'] == 'avg' else 'max'} = **{e['value']:.4f}**")
    else:
        st.markdown(f"**{e['layer']} unit {e['unit']}** adds up all {e['inputs']} of **{e['input']}**'s values, each "
                    f"times its weight. The {len(e['largest'])} largest contributions:")
        st.dataframe([{"input": c["index"], **({"from (map, row, col)": ", ".join(map(str, c["map_position"]))}
                                               if "map_position" in c else {}),
                       "value": round(c["input"], 4), "× weight": round(c["weight"], 4),
                       "= product": round(c["product"], 4)} for c in e["largest"]], hide_index=True)
        st.markdown(f"sum of all {e['inputs']} products **{e['sum']:.4f}** + bias {e['bias']:.4f} = pre-activation "
                    f"**{e['pre_activation']:.4f}**; {e['activation']} → **{e['value']:.4f}**")
