"""The Activations page's views: one input's maps (with the filters, and which pixels decided the
answer), two inputs compared side by side (the chapter's exercise 3: pullovers vs coats), and a
recorded run replayed epoch by epoch."""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import streamlit as st

from lenet_core.preprocess import image_to_tensor
from lenet_core.train import as_input

from . import attribution_view, maps, models, scrubber
from .datasets import missing_data_markdown

ss = st.session_state
VIEWS = ("One input", "Compare two inputs", "Epoch by epoch")
SOURCES = ("Test image", "Random test image", "Average of N test images", "Current drawing")
DEFAULT_PAIRS = {"fashion-mnist": ("Pullover", "Coat"), "mnist": ("4", "9")}
SCALES = ("One for all maps", "One per map")
KEEP = "session"  # every choice is kept when you visit another page and come back


@dataclass
class Display:
    stage: str
    per_map: bool
    filters: bool


def set_choice(key, options, default):
    """Give widget `key` a valid value before it is drawn (options change with the model)."""
    if ss.get(key) not in options:
        ss[key] = default


def honour_request(available, get_data) -> None:
    """The Evaluate page opens one of its test images here through a request; honour it once."""
    request = ss.pop("activations_request", None)
    if not request:
        return
    entry = {e.key: e for e in available}.get(request.get("model_key"))
    data, error = get_data(request.get("dataset", entry.dataset if entry else "mnist"))
    if entry is None:
        st.warning("The model sent from Evaluate is no longer available.")
    elif data is None:
        st.warning(error)
    else:
        idx = int(request["index"])
        label = int(data.test_labels[idx])
        models.choose(entry.key)
        ss.update(act_view="One input", act_a_source="Test image", act_a_class=entry.classes[label],
                  act_a_index=int((data.test_indices_of(label) == idx).nonzero()[0, 0]),
                  act_saliency=bool(request.get("saliency")))


def display_options() -> Display:
    with st.popover("Display", icon=":material/tune:"):
        set_choice("act_stage", maps.STAGES, "post-activation")
        stage = st.radio("Layer output", maps.STAGES, key="act_stage", persist_state=KEEP,
                         help="pre-activation: the convolution's raw output; post-activation: after the "
                              "activation function; pooled: after pooling (the next layer's input).")
        set_choice("act_scale", SCALES, SCALES[0])
        per_map = st.radio("Colour scale", SCALES, key="act_scale", persist_state=KEEP,
                           help="One per map shows the pattern inside weak maps, but hides which maps are strong."
                           ) == SCALES[1]
        filters = st.toggle("Show filters", value=True, key="act_filters", persist_state=KEEP,
                            help="Each map's filter drawn above it (One input).")
    return Display(stage, per_map, filters)


def pick_input(side: str, default_class: str, data, error, classes):
    """Widgets for one input; (images (N,1,28,28) float, caption, true label or None), or None."""
    has_drawing = ss.get("draw_image") is not None
    set_choice(f"act_{side}_source", SOURCES, SOURCES[0] if data is not None or not has_drawing else SOURCES[3])
    source = st.selectbox("Input", SOURCES, key=f"act_{side}_source", persist_state=KEEP)
    if source == "Current drawing":
        if not has_drawing:
            st.info("Nothing drawn yet: draw something on the Draw page, then come back.")
            st.page_link("views/draw.py", label="Go to Draw", icon=":material/draw:")
            return None
        return image_to_tensor(ss["draw_image"]), "your drawing from the Draw page", None
    if data is None:
        st.warning("Test images need the data set the model was trained on.\n\n" + missing_data_markdown(error))
        return None
    if source == "Random test image":
        if st.button("Another random image", key=f"act_{side}_reroll") or f"act_{side}_random" not in ss:
            ss[f"act_{side}_random"] = random.randrange(len(data.test_labels))
        idx = ss[f"act_{side}_random"] % len(data.test_labels)
        label = int(data.test_labels[idx])
        return as_input(data.test_images[idx:idx + 1]), f"test image #{idx}, a {classes[label]}", label
    set_choice(f"act_{side}_class", classes, default_class if default_class in classes else classes[0])
    name = st.selectbox("Class", classes, key=f"act_{side}_class", persist_state=KEEP)
    label = classes.index(name)
    indices = data.test_indices_of(label)
    if len(indices) == 0:
        st.warning(f"The test set has no {name} images.")
        return None
    if source == "Average of N test images":
        n = (st.slider("N images", 1, min(200, len(indices)), min(50, len(indices)), key=f"act_{side}_n",
                       persist_state=KEEP)
             if len(indices) > 1 else 1)
        return (as_input(data.test_images[indices[:n]]),
                f"the mean of the first {n} {name} test images (maps averaged too)", label)
    if ss.get(f"act_{side}_index", 0) >= len(indices):
        ss[f"act_{side}_index"] = len(indices) - 1
    pos = st.number_input(f"Which of the {len(indices)} test images of {name}", 0, len(indices) - 1,
                          key=f"act_{side}_index", persist_state=KEEP)
    idx = int(indices[pos])
    return as_input(data.test_images[idx:idx + 1]), f"test image #{idx}, a {name}", label


def show_input(x, caption, label, probs, classes):
    st.image(maps.upscale(x.mean(dim=0)[0].numpy(), 5), width=140, clamp=True)
    pred = probs.argmax(axis=1)
    verdict = (f"model says **{classes[pred[0]]}** ({probs[0, pred[0]]:.0%})" if len(x) == 1
               else f"model right on {int((pred == label).sum())} of {len(x)}")
    st.caption(f"Input: {caption}; {verdict}.")


def colour_note(per_map: bool, diverging: bool, shared_by: str = "all maps of the layer") -> str:
    scale = "each map has its own colour range" if per_map else f"one colour range for {shared_by}"
    colours = "red = positive, blue = negative, white = 0" if diverging else "dark purple = low, yellow = high"
    return f"Colours: {colours}; {scale}"


def one_input(entry, data, error, show: Display):
    """The maps of one input; returns that input (N, 1, 28, 28), or None when there is none."""
    classes = list(entry.classes)
    # The input, its picture and the attribution side by side, so the maps start above the fold
    # of a 1280x800 projector.
    pick, picture, explain = st.columns([2, 1.4, 2.4], gap="medium")
    with pick:
        picked = pick_input("a", DEFAULT_PAIRS.get(entry.dataset, classes[:1] * 2)[0], data, error, classes)
    if picked is None:
        return None
    x, caption, label = picked
    acts, probs = maps.forward(entry.model, x)
    with picture:
        show_input(x, caption, label, probs, classes)
    with explain:
        if len(x) == 1:
            with st.expander("Which pixels made it say that", expanded=bool(ss.get("act_saliency")),
                             icon=":material/ads_click:"):
                attribution_view.show(entry.model, x[0, 0].numpy(), classes, int(probs[0].argmax()), key="act.attr")
    for layer in maps.conv_layers(entry.model):
        m = maps.stage_maps(acts, layer, show.stage)
        div = maps.diverging_for(show.stage, m)
        filters, filter_note = maps.filter_summary(entry.model, layer) if show.filters else (None, "")
        st.subheader(f"conv{layer}: {m.shape[0]} maps of {m.shape[1]}x{m.shape[2]} ({show.stage})", divider="gray")
        st.plotly_chart(maps.map_grid(m, filters=filters, per_map=show.per_map, diverging=div,
                                      ncols=maps.grid_shape(m.shape[0], 8)[1], width_px=1000),
                        theme="streamlit", config={"displayModeBar": False}, key=f"act_conv{layer}")
        st.caption(f"{filter_note} {colour_note(show.per_map, div)}."
                   + (" Filters: red = positive weight, blue = negative." if show.filters else ""))
        w = entry.model.net.get_submodule(f"conv{layer}").weight
        if show.filters and w.shape[1] > 1 and st.toggle(
                f"Show every kernel of conv{layer} ({w.shape[0]} filters x {w.shape[1]} input channels)",
                key=f"act_kernels{layer}"):
            st.plotly_chart(maps.kernel_tiles(w.detach().cpu().numpy()), theme="streamlit",
                            config={"displayModeBar": False}, key=f"act_kernel_tiles{layer}")
    return x


def compare(entry, data, error, show: Display) -> None:
    classes = list(entry.classes)
    pair = DEFAULT_PAIRS.get(entry.dataset, tuple(classes[:2]))
    col_a, col_b = st.columns(2, gap="large")
    with col_a:
        st.subheader("Input A", divider="gray")
        a = pick_input("a", pair[0], data, error, classes)
    with col_b:
        st.subheader("Input B", divider="gray")
        b = pick_input("b", pair[1], data, error, classes)
    if a is None or b is None:
        return
    (xa, cap_a, la), (xb, cap_b, lb) = a, b
    acts_a, probs_a = maps.forward(entry.model, xa)
    acts_b, probs_b = maps.forward(entry.model, xb)
    with col_a:
        show_input(xa, cap_a, la, probs_a, classes)
    with col_b:
        show_input(xb, cap_b, lb, probs_b, classes)
    for layer in maps.conv_layers(entry.model):
        ma, mb = maps.stage_maps(acts_a, layer, show.stage), maps.stage_maps(acts_b, layer, show.stage)
        div = maps.diverging_for(show.stage, np.concatenate([ma, mb]))
        both = (float(min(ma.min(), mb.min())), float(max(ma.max(), mb.max())))
        ncols = maps.grid_shape(ma.shape[0], 4)[1]
        st.subheader(f"conv{layer}: {ma.shape[0]} maps of {ma.shape[1]}x{ma.shape[2]} ({show.stage})", divider="gray")
        for col, part, title, m, kw in zip(
                st.columns(3), ("a", "b", "diff"), ("A", "B", "A − B (difference)"), (ma, mb, ma - mb),
                (dict(diverging=div, value_range=both), dict(diverging=div, value_range=both),
                 dict(diverging=True))):
            with col:
                st.markdown(f"**{title}**")
                st.plotly_chart(maps.map_grid(m, per_map=show.per_map, ncols=ncols, width_px=320, **kw),
                                theme="streamlit", config={"displayModeBar": False}, key=f"act_cmp{layer}_{part}")
        st.caption(f"{colour_note(show.per_map, div, 'all maps of A and B, so they compare directly')}. "
                   "Difference: red where A responds more, blue where B does.")


def epochs(entry) -> None:
    """The model's run replayed epoch by epoch (a run's own recording, probes.pt)."""
    if not scrubber.show(entry.path, list(entry.classes), key="act.scrub"):
        st.info(f"**{entry.name}** has no epoch-by-epoch recording (runs trained before this version of LeNet Lab "
                "have none): train it again on the Train page to watch its filters form.")
