"""LeNet Lab: the frame. Pages live in pages/; the engine in lenet_core/."""
import streamlit as st

from lenet_app.icon import favicon

st.set_page_config(page_title="LeNet Lab", page_icon=favicon(), layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/draw.py", title="Draw", icon=":material/draw:"),
    st.Page("pages/activations.py", title="Activations", icon=":material/grid_view:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/fact_check:"),
]
from lenet_app.runtime import freeze_long_lived_objects  # noqa: E402

# The navigation runs along the top, leaving the page's whole width to the content (with a
# 300-pixel sidebar, a 1024-pixel projector squeezed the Train page's controls to "sigr" and
# "ave"); less empty space above each title, for 768-pixel-high screens.
st.html('<style>[data-testid="stMainBlockContainer"] {padding-top: 3.5rem}</style>')
try:
    st.navigation(pages, position="top").run()
finally:  # also when a page calls st.stop(); after it ran, so torch & co. are loaded
    freeze_long_lived_objects()
