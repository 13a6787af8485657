"""LeNet Lab's server: `streamlit run app.py` (what `make app` runs).

The pages are lenet_lab.py's; around them this adds the workers that train runs outside the web
process, the cookie that lets a browser find its runs again, and the live panel's JSON route
(lenet_app/server.py)."""
import sys

import streamlit as st
from starlette.middleware import Middleware

from lenet_app import server
from lenet_app.session import lecturer_token_problem

if problem := lecturer_token_problem():  # refused before the server starts, with how to make a good one
    print(f"error: {problem}", file=sys.stderr)
    sys.exit(2)

app = st.App("lenet_lab.py", lifespan=server.lifespan, routes=server.routes(),
             middleware=[Middleware(server.BrowserCookie)])
