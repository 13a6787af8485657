"""Train: set up a LeNet, train it in the background, watch the curves, compare runs."""
import streamlit as st

from lenet_app import train_view as tv
from lenet_app.live_chart import live_plotly_chart
from lenet_app.runtime import warm_up_training
from lenet_app.state import (DATASET_LABELS, device_info, ensure_app_frame, forget_data_failures, get_data,
                             missing_data_markdown, session_runs)
from lenet_core.model import ACTIVATIONS, INITS, MAX_CONV_LAYERS, MAX_DENSE_LAYERS, PADDINGS, POOLINGS, PRESETS
from lenet_core.train import OPTIMIZERS

ensure_app_frame()
warm_up_training()

k = tv.key
KEEP = "session"  # every control keeps its value when you visit another page and come back
tv.init_controls()
tv.check_source()
values = tv.current_controls()
config = tv.config_from_controls(values)
problem = tv.config_problem(config)
data, data_error = get_data(config.dataset)
current = tv.current_run()
live = tv.live_run() is not None
fixed = values["source"] != "new"  # continuing from a checkpoint keeps its architecture and data set


def explain(*settings):
    """The message of an impossible setting, right under its control."""
    if problem is not None and problem.setting in settings:
        st.error(f"**This network cannot be built.** {problem.message}", icon=":material/error:")


st.title("Train")
st.caption("Set up a LeNet on the left, press **Start training**, and watch it learn. "
           "The defaults are the chapter's LeNet-5 on Fashion-MNIST. Every run is kept below to compare.")

# The controls keep a readable width (a third of a 1024-pixel window squeezed them to "sigr" and
# "ave"); the charts take the rest, and go below the controls when that is under 460 pixels (the
# style is on the wrapper, the row's flex item).
st.html('<style>[data-testid="stLayoutWrapper"]:has(> .st-key-train_charts) {min-width: 460px}</style>')
with st.container(horizontal=True, gap="large"):
    left = st.container(width=340)
    right = st.container(width="stretch", key="train_charts")

with left:
    st.subheader(":material/account_tree: Architecture", divider="gray")
    if fixed:
        st.caption("Fixed by the checkpoint you continue from (see *Start from* below).")
    presets = [*PRESETS, tv.CUSTOM]
    st.selectbox("Preset", presets, index=presets.index(values["preset"]), key=tv.preset_widget_key(),
                 on_change=tv.on_preset, format_func=tv.PRESET_LABELS.get, disabled=fixed,
                 help="Sets the architecture controls below. **classic** is the chapter's LeNet-5 (sigmoid, "
                      "average pooling); **modern** is exercise 1 (ReLU, max pooling).")
    st.selectbox("Data set", list(DATASET_LABELS), key=k("dataset"), format_func=DATASET_LABELS.get,
                 disabled=fixed, persist_state=KEEP,
                 help="The chapter trains on Fashion-MNIST (clothes); MNIST is handwritten digits.")
    c1, c2 = st.columns(2)
    c1.selectbox("Activation", list(ACTIVATIONS), key=k("activation"), on_change=tv.on_architecture,
                 disabled=fixed, persist_state=KEEP, help="The chapter uses sigmoid; ReLU is the modern choice.")
    c2.selectbox("Pooling", list(POOLINGS), key=k("pooling"), on_change=tv.on_architecture,
                 format_func=tv.POOLING_LABELS.get, disabled=fixed, persist_state=KEEP,
                 help="The chapter uses 2×2 average pooling; max pooling keeps the strongest response.")
    c1.slider("Kernel size", 1, 11, key=k("kernel_size"), on_change=tv.on_architecture, disabled=fixed,
              persist_state=KEEP, help="Each convolution looks at a k×k window. The chapter uses 5×5.")
    c2.selectbox("Padding", PADDINGS, key=k("padding"), on_change=tv.on_architecture, disabled=fixed,
                 persist_state=KEEP, help="**chapter**: only the first conv is padded, as in the book "
                                          "(28→28, then 14→10). **same**: every conv keeps its input size.")
    explain("kernel_size", "padding")
    st.slider("Conv layers", 1, MAX_CONV_LAYERS, key=k("conv_layers"), on_change=tv.on_architecture,
              disabled=fixed, persist_state=KEEP,
              help="Blocks of convolution → activation → 2×2 pooling. The chapter has 2.")
    st.caption("Channels of each conv layer (the chapter: 6, then 16)")
    for col, i in zip(st.columns(MAX_CONV_LAYERS), range(1, values["conv_layers"] + 1)):
        col.number_input(f"conv{i}", 1, 256, key=k(f"conv{i}"), on_change=tv.on_architecture,
                         disabled=fixed, persist_state=KEEP, help=f"Feature maps conv{i} makes.")
    explain("conv_channels")
    st.slider("Dense layers", 0, MAX_DENSE_LAYERS, key=k("dense_layers"), on_change=tv.on_architecture,
              disabled=fixed, persist_state=KEEP,
              help="Hidden fully connected layers before the 10-way output. The chapter has 2 (120 and 84).")
    if values["dense_layers"]:
        st.caption("Units of each dense layer (the chapter: 120, then 84)")
    for col, i in zip(st.columns(MAX_DENSE_LAYERS), range(1, values["dense_layers"] + 1)):
        col.number_input(f"fc{i}", 1, 1024, key=k(f"fc{i}"), on_change=tv.on_architecture,
                         disabled=fixed, persist_state=KEEP, help=f"Units in the hidden dense layer fc{i}.")
    explain("dense_widths")
    st.selectbox("Initialisation", INITS, key=k("init"), on_change=tv.on_architecture, disabled=fixed,
                 persist_state=KEEP, help="**xavier** is the chapter's init_cnn; **kaiming** suits ReLU; "
                                          "**default** is PyTorch's own.")
    explain("activation", "pooling", "init", "num_classes")
    if problem is None or problem.setting not in tv.ARCH_SETTINGS:
        rows = tv.layer_table(config.model)
        st.markdown(f"**Layers** · {rows[-1]['parameters']:,} parameters")
        st.dataframe(rows, hide_index=True, height=35 * len(rows) + 38,
                     column_order=("layer", "output shape", "parameters"), column_config={
                         "layer": st.column_config.TextColumn(width=95),
                         "output shape": st.column_config.TextColumn("output", width=100),
                         "parameters": st.column_config.NumberColumn("params", format="localized", width=75)})

    st.subheader(":material/tune: Training", divider="gray")
    c1, c2 = st.columns(2)
    c1.selectbox("Optimizer", OPTIMIZERS, key=k("optimizer"), persist_state=KEEP,
                 format_func=tv.OPTIMIZER_LABELS.get, help="The chapter uses plain minibatch SGD.")
    c2.number_input("Epochs", 1, 200, key=k("epochs"), persist_state=KEEP,
                    help="Passes over the training set. The chapter trains for 10.")
    st.select_slider("Learning rate", tv.with_value(tv.LR_VALUES, values["lr"]), key=k("lr"),
                     format_func=lambda v: f"{v:g}", persist_state=KEEP,
                     help="Step size (log scale). The chapter uses 0.1 with SGD; Adam wants about 0.001. "
                          "Too large and the loss blows up.")
    st.select_slider("Batch size", tv.with_value(tv.BATCH_SIZES, values["batch_size"]), key=k("batch_size"),
                     persist_state=KEEP, help="Images per step. The chapter uses 128.")
    c1, c2 = st.columns(2)
    c1.number_input("Seed", 0, 2**31 - 1, key=k("seed"), persist_state=KEEP,
                    help="Fixes the initial weights and the order of the data: same seed, same run.")
    c2.selectbox("Device", tv.device_options(), key=k("device"), persist_state=KEEP,
                 help=f"auto picks a GPU if there is one. Here: {device_info()}.")
    explain("lr", "batch_size", "epochs", "optimizer", "device", "dataset")

    st.subheader(":material/restart_alt: Start from", divider="gray")
    sources = tv.source_labels()
    st.selectbox("Weights", list(sources), key=k("source"), on_change=tv.on_source,
                 format_func=sources.get, persist_state=KEEP,
                 help="New random weights, or continue training a finished or uploaded run from its weights "
                      "(with its architecture and data set).")
    st.file_uploader("Upload a checkpoint to continue training it", key=k("upload"), on_change=tv.on_upload,
                     help="A .pt file downloaded from this page (or saved by `python -m lenet_core train`).")
    if message := st.session_state.get(k("upload_message")):
        (st.error if message[0] == "error" else st.success)(message[1])

with right:
    b1, b2 = st.columns([1, 2], vertical_alignment="center")
    b1.button("Start training", type="primary", icon=":material/play_arrow:", on_click=tv.on_start,
              disabled=data is None or problem is not None or live, width="stretch")
    b2.markdown(f":material/memory: Training runs on **{device_info()}**")
    if data_error:
        st.error(missing_data_markdown(data_error), icon=":material/database:")
        st.button("Check again", on_click=forget_data_failures)
    elif problem is not None:
        st.warning("Start is off until the network can be built: see the message on the left.")
    if start_error := st.session_state.pop(k("start_error"), None):
        st.error(start_error)

    if (current is None or current.job is None) and not (data_error or problem):
        st.info("Press **Start training**: the loss and accuracy curves appear here as the network learns.",
                icon=":material/show_chart:")
        # Empty axes: they show where the curves will be, and the browser loads its charting
        # code now rather than in the first seconds of the run, when it would slow training.
        tv.show_curves([], [], tv.total_steps(config, data), config.epochs)
    elif current is not None and current.job is not None:
        job = current.job
        with st.container(horizontal=True, vertical_alignment="center"):
            st.subheader(f"{current.name} · {tv.run_status(job)}", anchor=False)
            if live:  # a click reruns the whole page, so these need no live updates
                if job.control.paused:
                    st.button("Resume", icon=":material/play_arrow:", on_click=job.resume)
                else:
                    st.button("Pause", icon=":material/pause:", on_click=job.pause)
                st.button("Stop", icon=":material/stop:", on_click=job.stop)

        # While the run trains, the browser redraws its panel from a file the server keeps
        # fresh (no reruns); where that cannot work, a fragment redraws it twice a second.
        if not (live and tv.show_live_panel(current)):
            tv.still_progress_bars()

            @st.fragment(run_every=tv.REFRESH_SECONDS if live else None)
            def run_panel(live: bool):
                if live and not job.alive:
                    st.rerun()  # the run just ended: redraw the whole page once, statically
                snap = job.snapshot()
                if snap.done:
                    tv.status_message(snap)
                else:
                    st.progress(snap.progress, text=tv.progress_text(snap))
                tv.show_curves(snap.steps, snap.epochs, snap.total_steps, snap.config.epochs)

            run_panel(live)

    st.subheader(":material/compare: Runs of this session", divider="gray")
    views = [tv.run_view(run) for run in session_runs().values()]
    if not views:
        st.caption("Every run you start, and every checkpoint you upload, is listed here to compare: "
                   "e.g. classic against modern, or kernel 3 against 5 (the chapter's exercises).")
    else:
        st.dataframe(tv.runs_table(views), hide_index=True,
                     column_config={c: st.column_config.TextColumn(alignment="right")
                                    for c in ("val accuracy", "epochs", "samples/s", "time")})
        tv.sync_compare([v.run.id for v in views])
        names = {v.run.id: v.run.name for v in views}
        chosen = st.pills("Overlay", list(names), selection_mode="multi", key=k("compare"), format_func=names.get,
                          persist_state=KEEP, help="Tick the runs whose curves to draw on top of each other.")
        live_plotly_chart(tv.compare_figure([v for v in views if v.run.id in chosen]), "compare-runs")
        downloadable = [v.run.id for v in views if v.status in ("finished", "stopped", "uploaded")]
        if downloadable:
            c1, c2 = st.columns(2, vertical_alignment="bottom")
            run = session_runs()[c1.selectbox("Checkpoint of", downloadable, format_func=names.get)]
            c2.download_button("Download checkpoint", data=tv.checkpoint_data(run), file_name=tv.checkpoint_name(run),
                               mime="application/octet-stream", icon=":material/download:", width="stretch",
                               on_click="ignore", help="Weights, settings and curves in one .pt file; upload it "
                                                       "here to continue training, or load it on the other pages.")
