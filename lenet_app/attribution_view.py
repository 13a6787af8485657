"""Which pixels made it say 7: an attribution map (lenet_core.attribution, Captum) over the input,
for the predicted class or any other, drawn over the image with a colour scale that says what it
means. Used by Draw (for the drawing) and Activations (for any input)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from lenet_core.attribution import METHODS, SIGNED, attribute, methods_for

from .maps import FONT, run_single_threaded

# Signed maps: blue against, transparent at 0, red for; unsigned: transparent to red.
SIGNED_SCALE = [[0, "rgba(33,102,172,0.95)"], [0.5, "rgba(255,255,255,0)"], [1, "rgba(178,24,43,0.95)"]]
UNSIGNED_SCALE = [[0, "rgba(255,200,0,0)"], [0.3, "rgba(255,170,0,0.5)"], [1, "rgba(200,0,0,0.95)"]]
PREDICTED = "predicted"  # the class choice that follows the model's answer


def figure(image: np.ndarray, heat: np.ndarray, signed: bool, height: int = 300) -> go.Figure:
    """The 28x28 image in grey with the map over it, and a colour bar in the map's own units."""
    top = float(np.abs(heat).max()) or 1.0
    fig = go.Figure([
        go.Heatmap(z=image, colorscale="Greys", reversescale=True, showscale=False, hoverinfo="skip", zmin=0, zmax=1),
        go.Heatmap(z=heat, colorscale=SIGNED_SCALE if signed else UNSIGNED_SCALE, zmin=-top if signed else 0,
                   zmax=top, hovertemplate="pixel (%{x}, %{y}): %{z:.3g}<extra></extra>",
                   colorbar=dict(thickness=12, outlinewidth=0, len=0.9, tickfont=dict(size=FONT - 3),
                                 title=dict(text="for ▲<br>against ▼" if signed else "how much", side="right",
                                            font=dict(size=FONT - 3))))])
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=0, b=0),
                      xaxis=dict(visible=False, constrain="domain", fixedrange=True),
                      yaxis=dict(visible=False, autorange="reversed", scaleanchor="x", fixedrange=True))
    return fig


def show(model, image: np.ndarray, classes, predicted: int, key: str) -> None:
    """Method and class choices, then the map of `image` (28x28 in [0, 1]) for that class."""
    methods = methods_for(model)
    c1, c2 = st.columns(2)
    if st.session_state.get(f"{key}.method") not in methods:
        st.session_state[f"{key}.method"] = methods[0]
    method = c1.selectbox("Method", methods, key=f"{key}.method", format_func=lambda m: METHODS[m][0],
                          persist_state="session",
                          help="Guided methods are offered for ReLU networks only: they change only the gradient "
                               "through ReLUs, so on the chapter's sigmoid network they would show nothing new.")
    # "predicted" with a label that never changes: a select's choice is kept by its label, so a label
    # naming the prediction went stale when the prediction changed, and a None choice showed as empty
    # once the select came back (after Clear on Draw). The caption below names the class. For the
    # same reason a class picked for one model is dropped when the model's classes are others.
    choices = [PREDICTED, *range(len(classes))]
    other_classes = st.session_state.get(f"{key}.classes") != tuple(classes)
    if other_classes or st.session_state.get(f"{key}.target") not in choices:
        st.session_state[f"{key}.target"] = PREDICTED
    st.session_state[f"{key}.classes"] = tuple(classes)
    target = c2.selectbox("For the class", choices, key=f"{key}.target", persist_state="session",
                          format_func=lambda c: "the predicted class" if c == PREDICTED else classes[c])
    target = predicted if target == PREDICTED else target
    result = run_single_threaded(attribute, model, image, target, method)
    st.plotly_chart(figure(image, result.map, SIGNED[method]), theme=None, key=f"{key}.figure",
                    config={"displayModeBar": False})
    st.caption(f"**{METHODS[method][0]}** for **{classes[target]}**: {METHODS[method][1]} "
               f"({result.seconds * 1000:.0f} ms)")
