import streamlit as st

from lenet_app.state import DATASET_LABELS, device_info, local_data_status, shipped_models

st.title("LeNet Lab")
st.markdown(
    "Train **LeNet-5**, the convolutional network from the *Dive into Deep Learning* chapter, "
    "and see inside it: change its architecture and watch the curves as it learns, draw a digit "
    "and see what it predicts, and look at what its convolution layers respond to.")

col_device, col_data, col_models = st.columns(3)
with col_device:
    st.subheader("Device", divider="gray")
    st.markdown(f"Training runs on **{device_info()}**.")
with col_data:
    st.subheader("Data sets", divider="gray")
    for name, where in local_data_status().items():
        if where:
            st.markdown(f":material/check_circle: **{DATASET_LABELS[name]}** found in `{where}`")
        else:
            st.markdown(f":material/cloud_download: **{DATASET_LABELS[name]}**: no local copy; "
                        "downloaded on first use (or set `LENET_DATA_DIR`, see the README)")
with col_models:
    st.subheader("Shipped models", divider="gray")
    models = shipped_models()
    if not models:
        st.warning("No shipped models were found in models/.")
    for entry in models.values():
        acc = entry.metrics.get("test_accuracy")
        st.markdown(f"- {entry.label}" + (f": {acc:.1%} test accuracy" if acc is not None else ""))

st.subheader("Where to start", divider="gray")
c1, c2, c3, c4 = st.columns(4)
c1.page_link("pages/train.py", label="**Train** a LeNet and compare runs", icon=":material/model_training:")
c2.page_link("pages/draw.py", label="**Draw** a digit and see the prediction", icon=":material/draw:")
c3.page_link("pages/activations.py", label="**Activations**: what the conv layers see", icon=":material/grid_view:")
c4.page_link("pages/evaluate.py", label="**Evaluate**: accuracy and mistakes", icon=":material/fact_check:")
