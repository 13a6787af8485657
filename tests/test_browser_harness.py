"""The end-to-end harness itself: a throwaway Streamlit script, served and driven in Chromium."""
import socket
import textwrap

import pytest
from playwright.sync_api import expect

from browser import screenshot, start_app, wait_for_app

SCRIPT = textwrap.dedent(
    """
    import os
    import streamlit as st

    st.title("Harness smoke")
    st.write("marker:", os.environ.get("HARNESS_MARKER", "unset"))
    if st.button("Press me"):
        st.write("Button was pressed")
    """
)


def test_served_script_renders_in_chromium(tmp_path, start_server, browser_page):
    script = tmp_path / "smoke_app.py"
    script.write_text(SCRIPT)
    server = start_server({"HARNESS_MARKER": "from-the-test-env"}, script=script)

    page = browser_page
    page.goto(server.url)
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Harness smoke")).to_be_visible()
    expect(page.get_by_text("from-the-test-env")).to_be_visible()

    page.get_by_role("button", name="Press me").click()
    expect(page.get_by_text("Button was pressed")).to_be_visible()
    wait_for_app(page)
    path = screenshot(page, "harness_smoke")
    assert path.stat().st_size > 1000
    assert server.proc.poll() is None


def test_refuses_a_port_someone_else_holds(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        with pytest.raises(RuntimeError, match="already in use"):
            start_app(script=tmp_path / "never_started.py", port=squatter.getsockname()[1])
