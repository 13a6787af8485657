"""Draw a digit; see what the model sees, what it predicts, and its first two conv layers' maps.

The canvas (lenet_app/draw_canvas.py) runs the model in the browser while the pen moves; this
script runs when a stroke ends, for what needs the server: attribution and the probe inputs (and
everything, where the browser cannot run the model)."""
import html
import time

_t0 = time.perf_counter()  # the page's server time, for the latency benchmarks (data-ms, at the end)

import streamlit as st

from lenet_app import attribution_view, draw_canvas, maps, models, probe_inputs
from lenet_app.server import serving
from lenet_core.preprocess import image_to_tensor

st.title("Draw")

ss = st.session_state
ss.setdefault("draw_updates", 0)

with st.container(width=290):
    entry = models.picker()
    what = "a digit" if entry is None or entry.is_digits else "a garment"
    st.caption("Draw one digit:" if what == "a digit" else "Draw a garment:")
if entry is not None and not entry.is_digits:
    st.info(f"**{entry.label}** was trained on Fashion-MNIST: it sees garments, not digits, "
            "and will name a piece of clothing for whatever you draw.", icon=":material/checkroom:")
try:
    drawing = draw_canvas.show(entry, f"Draw {what} on the black canvas with your mouse, pen or finger: "
                                      "the prediction follows as you draw.", serving())
except ValueError as e:
    st.error(f"That drawing could not be read ({e}); draw again.", icon=":material/error:")
    drawing = None
img = drawing.image if drawing is not None else None
ss["draw_image"] = img  # the Activations page offers it as "current drawing"

# Count the drawings received, so a user (and the latency benchmark) can see the page answer each stroke.
if drawing is not None and drawing.number != ss.get("draw_last_id"):
    ss["draw_updates"] += 1
ss["draw_last_id"] = drawing.number if drawing is not None else None

if img is None:
    if not serving():  # (in a browser the canvas says it)
        st.info(f"Draw {what} on the black canvas with your mouse (or finger): the prediction appears here as "
                "soon as you lift the pen.", icon=":material/draw:")
elif entry is not None:  # (without a model, model_picker has said so)
    acts, probs = maps.forward(entry.model, image_to_tensor(img))
    p = probs[0]
    best = int(p.argmax())
    name = entry.classes[best]
    if not drawing.live:  # the browser could not run the model: the server answers, as before the canvas
        with st.container(horizontal=True, gap="medium"):
            with st.container(width=190):
                st.markdown("**What the model sees** (28x28)")
                st.image(maps.upscale(img, 5), width=140, clamp=True)
                st.markdown("**Prediction**")
                size = "4.5rem" if len(name) <= 2 else "2.2rem"  # a digit big; "Ankle boot" still on one line
                st.markdown(f'<div class="draw-prediction" data-update="{ss["draw_updates"]}" '
                            f'style="font-size:{size};font-weight:700;line-height:1.1">{html.escape(name)}</div>',
                            unsafe_allow_html=True)
                st.markdown(f"{p[best]:.0%} sure")
            with st.container(width="stretch"):
                st.markdown("**Probability of every class**")
                st.plotly_chart(maps.probability_bars(p, entry.classes), theme="streamlit",
                                config={"displayModeBar": False}, key="draw_bars")

    st.subheader(f"Which pixels made it say {name}", divider="gray")
    with st.container(horizontal=True, gap="large"):
        with st.container(width=420):
            attribution_view.show(entry.model, img, entry.classes, best, key="draw.attr")
        with st.container(width="stretch"):
            st.markdown("**Other inputs, and what the model makes of them**")
            probe_inputs.show(entry.model, img, entry.classes)


if img is not None and entry is not None and not drawing.live:  # (live, the canvas draws them as the pen moves)
    st.subheader("What the first conv layers see", divider="gray")
    st.caption(draw_canvas.MAPS_CAPTION)
    layers = maps.conv_layers(entry.model)[:2]
    widths = [0.42, 0.58][:len(layers)]
    for col, layer, share in zip(st.columns(widths, gap="large"), layers, widths):
        m = maps.stage_maps(acts, layer, "post-activation")
        _, ncols = maps.grid_shape(m.shape[0], 4 if layer == 1 else 8)
        with col:
            st.markdown(f"**conv{layer}**: {m.shape[0]} maps, {m.shape[1]}x{m.shape[2]}")
            st.plotly_chart(maps.map_grid(m, ncols=ncols, width_px=int(900 * share), max_cell_px=120,
                                          diverging=maps.diverging_for("post-activation", m)),
                            theme="streamlit", config={"displayModeBar": False}, key=f"draw_conv{layer}")


# For the latency benchmarks (hidden): this drawing's number and the server's time for the whole page.
st.html(f'<div class="draw-done" data-update="{ss["draw_updates"]}" '
        f'data-ms="{(time.perf_counter() - _t0) * 1000:.0f}" hidden></div>')
