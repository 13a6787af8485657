"""Draw a digit; see what the model sees, what it predicts, and its first two conv layers' maps."""
import html
import time

_t0 = time.perf_counter()  # the page's server time, for the latency benchmarks (data-ms, at the end)

import streamlit as st
from streamlit_drawable_canvas import st_canvas

from lenet_app import attribution_view, maps, models, probe_inputs
from lenet_core.preprocess import digit_from_rgba, image_to_tensor

st.title("Draw")

ss = st.session_state
ss.setdefault("draw_clears", 0)
ss.setdefault("draw_updates", 0)


def clear_canvas():
    ss["draw_clears"] += 1  # a new key gives a new, empty canvas


# Fixed widths for the canvas and the prediction, so the 280-pixel canvas is never clipped by a
# narrow column (a projector at 1024 or 1280 pixels); the row wraps when the window is too narrow.
row = st.container(horizontal=True, gap="medium")
with row:
    left = st.container(width=290)
    middle = st.container(width=190)
    right = st.container(width="stretch")
with left:
    entry = models.picker()
    canvas_key = "draw_canvas" if ss["draw_clears"] == 0 else f"draw_canvas_{ss['draw_clears']}"
    st.caption("Draw one digit:" if entry is None or entry.is_digits else "Draw a garment:")
    result = st_canvas(stroke_width=18, stroke_color="#FFFFFF", background_color="#000000",
                       height=280, width=280, drawing_mode="freedraw", return_image_data=True, key=canvas_key)
    st.button("Clear", icon=":material/delete:", on_click=clear_canvas)

rgba = result.image_data
img = digit_from_rgba(rgba) if rgba is not None else None
ss["draw_image"] = img  # the Activations page offers it as "current drawing"

# Count the drawings received, so a user (and the latency benchmark) can see the page answer each stroke.
drawing_id = result.image_bytes if rgba is not None else None
if img is not None and drawing_id != ss.get("draw_last_id"):
    ss["draw_updates"] += 1
ss["draw_last_id"] = drawing_id

if entry is not None and not entry.is_digits:
    with left:
        st.info(f"**{entry.label}** was trained on Fashion-MNIST: it sees garments, not digits, "
                "and will name a piece of clothing for whatever you draw.", icon=":material/checkroom:")

if img is None:
    with middle:
        st.info(f"Draw {'a digit' if entry is None or entry.is_digits else 'a garment'} on the black canvas with your "
                "mouse (or finger): the prediction appears here as soon as you lift the pen.", icon=":material/draw:")
elif entry is not None:  # (without a model, model_picker has said so)
    acts, probs = maps.forward(entry.model, image_to_tensor(img))
    p = probs[0]
    best = int(p.argmax())
    with middle:
        st.markdown("**What the model sees** (28x28)")
        st.image(maps.upscale(img, 5), width=140, clamp=True)
        st.markdown("**Prediction**")
        name = entry.classes[best]
        size = "4.5rem" if len(name) <= 2 else "2.2rem"  # a digit big; "Ankle boot" still on one line
        st.markdown(f'<div class="draw-prediction" data-update="{ss["draw_updates"]}" '
                    f'style="font-size:{size};font-weight:700;line-height:1.1">{html.escape(name)}</div>',
                    unsafe_allow_html=True)
        st.markdown(f"{p[best]:.0%} sure")
    with right:
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

    st.subheader("What the first conv layers see", divider="gray")
    st.caption("Each square is one channel's feature map after the activation function (one colour scale "
               "per layer): bright where that channel's filter matches the drawing. More on the Activations page.")
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
