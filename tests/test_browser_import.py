"""In Chromium: a LeNet's weights saved in a notebook, dropped on the Train page's uploader, are shown
as the network read and its check, and one click on Add makes them a run of this browser."""
import re

import torch
from playwright.sync_api import expect

from browser import screenshot, wait_for_app
from lenet_core.data import load_dataset
from test_imports import train_small


def test_a_notebook_lenet_is_uploaded_checked_and_added(app_server, app_env, browser_page, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = train_small("relu", "max", load_dataset("fashion-mnist", app_env["LENET_DATA_DIR"]))
    finally:
        torch.set_num_threads(threads)
    params = tmp_path / "lenet.params"
    torch.save(net.state_dict(), params)

    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(f"{app_server.url}/train")
    wait_for_app(page)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(params))
    panel = page.locator(".st-key-train_import")
    expect(panel.get_by_text("net.0: conv 1→4 channels, 5×5, padded 2", exact=False)).to_be_visible(timeout=30_000)
    expect(panel.get_by_text(re.compile(r"relu \+ max pooling, \[0, 1\] input ← taken"))).to_be_visible(timeout=30_000)
    for width in (1280, 1024):
        page.set_viewport_size({"width": width, "height": 1000})
        wait_for_app(page)
        panel.evaluate("e => e.scrollIntoView({block: 'start'})")
        screenshot(page, f"train-import-{width}")
        panel.evaluate("e => e.scrollIntoView({block: 'end'})")
        screenshot(page, f"train-import-{width}-end")

    panel.get_by_role("button", name="Add to my runs").click()
    expect(page.get_by_text(re.compile(r"Added lenet\.params as relu \+ max pooling"))).to_be_visible(timeout=30_000)
    expect(page.locator(".st-key-train_import")).to_have_count(0)
    expect(page.get_by_role("heading", name=re.compile(r"^lenet\.params \(imported\)"))).to_be_visible()
    screenshot(page, "train-imported-1024")
