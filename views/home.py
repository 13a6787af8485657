import streamlit as st

st.title("LeNet Lab")
st.markdown(
    "#### Train LeNet-5, the convolutional network of the *Dive into Deep Learning* chapter, and look inside it.\n"
    "Change its architecture and watch it learn, draw a digit and see what it predicts, "
    "see what its convolution layers respond to, and find out which images it gets wrong.")

PAGES = [
    ("views/train.py", "Train", ":material/model_training:", "Train a LeNet, watch the curves, compare runs."),
    ("views/draw.py", "Draw", ":material/draw:", "Draw a digit and see what the model predicts."),
    ("views/activations.py", "Activations", ":material/grid_view:", "What each convolution layer sees."),
    ("views/evaluate.py", "Evaluate", ":material/fact_check:", "Test accuracy and the images it gets wrong."),
]
for col, (path, title, icon, what) in zip(st.columns(len(PAGES)), PAGES):
    with col.container(border=True, height="stretch"):
        st.markdown(f"#### {icon} {title}")
        st.markdown(what)
        st.page_link(path, label=f"Open {title}", icon=":material/arrow_forward:")

EXERCISES = [
    ("Modernise LeNet: max pooling instead of average pooling, ReLU instead of sigmoid.",
     "Trains the chapter's **classic** LeNet-5 and the **modern** one from the same seed, side by side "
     "(they share the server's workers), overlaid live on Train.",
     "Train classic and modern", "classic_vs_modern"),
    ("Change the network's size: kernel size, channels, conv and dense layers, learning rate, init, epochs.",
     "Trains the modern LeNet with 3×3, 5×5 and 7×7 kernels, one after the other, overlaid on Train; every other "
     "size is a control there (and a lecture scenario).", "Train a kernel sweep", "kernel_sweep"),
    ("Show the first and second conv layers' activations for different inputs, e.g. pullovers and coats.",
     "Opens Activations on a pullover and a coat, side by side, with their difference map by map.",
     "Pullovers vs coats", "pullovers_vs_coats"),
]
st.markdown("##### The chapter's exercises, one click each")
from lenet_app import exercises  # noqa: E402  (torch comes with it: after the text above is on screen)

for i, (task, how, label, action) in enumerate(EXERCISES, 1):
    c1, c2 = st.columns([4, 1.4], vertical_alignment="center")
    c1.markdown(f"**{i}. {task}** {how}" + (exercises.how_long(action) or ""))
    c2.button(label, key=f"home.ex{i}", on_click=getattr(exercises, action), icon=":material/play_arrow:",
              width="stretch")
if message := st.session_state.pop("home.message", None):
    st.warning(message)
if target := st.session_state.pop("home.go", None):
    st.switch_page(target)

from lenet_app.datasets import DATASET_LABELS, device_info, local_data_status  # noqa: E402
from lenet_app.models import run_models, shipped_models  # noqa: E402
col_device, col_data, col_models = st.columns(3, gap="large")
with col_device:
    st.subheader(":material/memory: Device", divider="gray")
    device = device_info()
    st.markdown(f"Training runs on **{device}**.")
    if not device.startswith("GPU"):
        st.caption("No CUDA GPU was found; LeNet is small enough to train on a CPU in minutes.")
with col_data:
    st.subheader(":material/dataset: Data sets", divider="gray")
    for name, where in local_data_status().items():
        label = DATASET_LABELS.get(name, name)
        if where:
            st.markdown(f":green[:material/check_circle:] **{label}**: ready  \n`{where}`")
        else:
            st.markdown(f":orange[:material/cloud_download:] **{label}**: missing here; downloaded on first "
                        f"use, or put its files in `DIR/{name}/` and set `LENET_DATA_DIR=DIR`")
with col_models:
    st.subheader(":material/neurology: Shipped models", divider="gray")
    models = shipped_models()
    if not models:
        st.warning("No shipped models were found in models/: train one on the Train page.")
    for entry in models.values():
        acc = entry.metrics.get("test_accuracy")
        st.markdown(f"**{entry.name}**: {entry.note}" + (f", **{acc:.1%}** test accuracy" if acc is not None else ""))
    if saved := run_models():
        st.caption(f"Your runs, offered on Draw, Activations and Evaluate too: {', '.join(e.name for e in saved[:5])}"
                   + (f" and {len(saved) - 5} more" if len(saved) > 5 else ""))
