"""LeNet Lab's server: `streamlit run app.py` (what `make app` runs).

The pages are lenet_lab.py's; around them this adds the workers that train runs outside the web
process, the cookie that lets a browser find its runs again, and the live panel's JSON route
(lenet_app/server.py)."""
import streamlit as st
from starlette.middleware import Middleware

from lenet_app import server

app = st.App("lenet_lab.py", lifespan=server.lifespan, routes=server.routes(),
             middleware=[Middleware(server.BrowserCookie)])
