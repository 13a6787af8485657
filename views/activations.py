"""What the conv layers respond to: every channel's map for a test image, a class average or a drawing,
two inputs compared side by side (the chapter's exercise 3: sweaters vs coats), and a run replayed
epoch by epoch."""
import streamlit as st

from lenet_app import activation_views as views
from lenet_app import feature_views, models, unit_view
from lenet_app.datasets import get_data

st.title("Activations")
st.caption("Exercise 3 of the LeNet chapter: display the activations of the first and second layer "
           "for different inputs, e.g. sweaters (pullovers) and coats.")
views.honour_request(models.available_models(), get_data)

# One row that wraps where it is too narrow for all the views (a 1024-pixel projector).
row = st.container(horizontal=True, vertical_alignment="bottom")
with row.container(width=340):
    entry = models.picker()
if entry is None:
    st.stop()
with row.container(width="content"):
    views.set_choice("act_view", views.VIEWS + feature_views.VIEWS, views.VIEWS[0])
    view = st.segmented_control("View", views.VIEWS + feature_views.VIEWS, key="act_view", required=True,
                                persist_state=views.KEEP)
with row.container(width="content"):
    display = views.display_options()

data, data_error = get_data(entry.dataset)
if view == "One input":
    if (x := views.one_input(entry, data, data_error, display)) is not None:
        unit_view.show(entry.model, x)  # click a value of a map: how it is computed
elif view == "Compare two inputs":
    views.compare(entry, data, data_error, display)
elif view == "Epoch by epoch":
    views.epochs(entry)
    feature_views.epochs_map(entry)
elif view == feature_views.VIEWS[0]:
    feature_views.test_set_map(entry, data, data_error)
else:
    feature_views.top_images_view(entry, data, data_error)
