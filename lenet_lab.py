"""LeNet Lab: the frame. The pages are in views/, the engine in lenet_core/."""
import streamlit as st

from lenet_app.icon import favicon
from lenet_app.session import lecturer_token

st.set_page_config(page_title="LeNet Lab", page_icon=favicon(), layout="wide")

pages = [
    st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/draw.py", title="Draw", icon=":material/draw:"),
    st.Page("views/activations.py", title="Activations", icon=":material/grid_view:"),
    st.Page("views/evaluate.py", title="Evaluate", icon=":material/fact_check:"),
]
if lecturer_token():  # the lecturer's view of the room exists only where a token is set
    pages.append(st.Page("views/classroom.py", title="Class", icon=":material/groups:"))

# The navigation runs along the top, leaving the page's whole width to the content (a 1024-pixel
# projector squeezed a sidebar's neighbours); less empty space above each title.
st.html('<style>[data-testid="stMainBlockContainer"] {padding-top: 3.5rem}</style>')
st.navigation(pages, position="top").run()
