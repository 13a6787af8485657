"""In Chromium: the learning rate of a running classic run changed from its panel, and the change
marked on its curves; a conv2 value clicked on Activations, and its computation shown beside it."""
import re
import time

import numpy as np
import pytest
from playwright.sync_api import expect

from browser import screenshot, wait_for_app
from lenet_core.checkpoint import load_checkpoint
from lenet_core.data import load_dataset
from lenet_core.explain import explain
from lenet_core.train import as_input
from lenet_app.models import MODELS_DIR
from synthetic import synthetic_idx

SHAPES = "(name) => (document.querySelector(`[data-chart=\"${name}\"]`)?.layout?.shapes || []).length"
NOTES = "(name) => (document.querySelector(`[data-chart=\"${name}\"]`)?.layout?.annotations || []).map(a => a.text)"


def tall_screenshot(page, name, height=1900):
    """Streamlit scrolls inside its own frame: the window is made tall enough to hold what is shown."""
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": height})
    wait_for_app(page)
    page.wait_for_timeout(800)
    screenshot(page, name)
    page.set_viewport_size(size)
    page.wait_for_timeout(300)


def pick_on_slider(page, label, value, stops):
    """Click the slider's track where `value` sits, as a person does (one change, not one per stop)."""
    slider = page.get_by_role("slider", name=label)
    slider.locator("xpath=../..").scroll_into_view_if_needed()
    track = slider.locator("xpath=../../..")  # range input < its 1px box < the thumb < the track
    thumb = slider.locator("xpath=../..").bounding_box()["width"]
    box = track.bounding_box()
    i = stops.index(value)
    x = box["x"] + thumb / 2 + (box["width"] - thumb) * i / (len(stops) - 1)
    page.mouse.click(x, box["y"] + box["height"] / 2)


@pytest.fixture
def long_epochs_server(start_server, tmp_path):
    """A server whose training set is large enough (16,384 images, 2,048 steps an epoch at batch 8)
    that a classic run is still in its first epochs, short of being stopped as stuck at chance,
    when the test acts on it."""
    synthetic_idx(tmp_path / "data" / "fashion-mnist", n_train=16384, n_test=256)
    return start_server({"LENET_DATA_DIR": str(tmp_path / "data"), "LENET_RUNS_DIR": str(tmp_path / "runs"),
                         "LENET_CACHE_DIR": str(tmp_path / "cache")})


def test_changing_the_learning_rate_of_a_running_classic_run_marks_its_curves(long_epochs_server, browser_page):
    from lenet_app.controls import BATCH_SIZES
    from lenet_app.live_settings import LR_STOPS

    page = browser_page
    page.goto(f"{long_epochs_server.url}/train")
    wait_for_app(page)
    pick_on_slider(page, "Batch size", 8, list(BATCH_SIZES))
    wait_for_app(page)
    expect(page.get_by_role("slider", name="Batch size")).to_have_attribute("aria-valuetext", "8")
    page.wait_for_timeout(1000)  # the slider sends its value a moment after it moves: let that rerun run
    wait_for_app(page)
    page.get_by_role("button", name="Start training").click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name=re.compile(r"^classic · batch 8 · training"))).to_be_visible(
        timeout=30_000)
    slider = page.get_by_role("slider", name="Learning rate, now")
    expect(slider).to_have_attribute("aria-valuetext", "0.1")
    assert page.evaluate(SHAPES, "loss-per-step") == 0
    pick_on_slider(page, "Learning rate, now", 0.9, list(LR_STOPS))
    wait_for_app(page)
    expect(slider).to_have_attribute("aria-valuetext", "0.9")
    # The worker takes it at its next step and records it; the panel draws the mark at its next read.
    deadline = time.monotonic() + 20
    while page.evaluate(SHAPES, "loss-per-step") == 0:
        assert time.monotonic() < deadline, "no mark on the loss curve 20 s after the change"
        page.wait_for_timeout(200)
    for chart in ("loss-per-step", "loss-per-epoch", "val-accuracy"):
        assert page.evaluate(SHAPES, chart) == 1 and "lr 0.1→0.9" in page.evaluate(NOTES, chart), chart
    tall_screenshot(page, "train-lr-change-1280", 1500)
    page.set_viewport_size({"width": 1024, "height": 900})
    page.wait_for_timeout(800)
    tall_screenshot(page, "train-lr-change-1024", 2000)
    page.get_by_test_id("stMain").get_by_role("button", name="Pause", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"· paused$"))).to_be_visible(timeout=20_000)
    expect(page.get_by_role("button", name="One step")).to_be_visible()
    page.get_by_test_id("stMain").get_by_role("button", name="Stop", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"· stopped$"))).to_be_visible(timeout=20_000)


CLICK_JS = """([r, c]) => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')]
    .find(g => (g.layout?.title?.text || '').startsWith('conv2['));
  gd.scrollIntoView({block: 'center'});
  const box = gd.getBoundingClientRect(), L = gd._fullLayout;
  return {x: box.left + L.xaxis._offset + L.xaxis.l2p(c), y: box.top + L.yaxis._offset + L.yaxis.l2p(r)};
}"""


def test_clicking_a_conv2_value_shows_how_it_is_computed(app_server, app_env, browser_page):
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(f"{app_server.url}/activations")
    wait_for_app(page)
    expect(page.get_by_role("heading", name=re.compile("One value, explained"))).to_be_attached(timeout=30_000)
    r, c = 3, 7
    page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')]"
                           ".some(g => (g.layout?.title?.text || '').startsWith('conv2[') && g._fullLayout)",
                           timeout=30_000)  # the heading comes before the map is drawn
    said = page.get_by_text(re.compile(r"conv2\[0\] at row \d+, col \d+")).first
    expect(said).to_be_visible(timeout=20_000)
    before = said.inner_text()  # the value explained before any click
    page.locator(".js-plotly-plot").filter(has_text="conv2[0]").first.scroll_into_view_if_needed()
    wait_for_app(page)
    point = page.evaluate(CLICK_JS, [r, c])
    page.mouse.click(point["x"], point["y"])
    wait_for_app(page)
    expect(said).not_to_have_text(before, timeout=20_000)
    # The cell under the pointer (a late layout shift can move it by one): the numbers must be its own.
    r, c = map(int, re.search(r"at row (\d+), col (\d+)", said.inner_text()).groups())
    assert abs(r - 3) <= 1 and abs(c - 7) <= 1, (r, c)

    # The numbers shown are the model's own: the shipped digits model on the first "4" of the test set.
    data = load_dataset("mnist", app_env["LENET_DATA_DIR"], download=False)
    idx = int(np.flatnonzero(data.test_labels.numpy() == 4)[0])
    model = load_checkpoint(MODELS_DIR / "digits" / "checkpoint.pt").model.eval()
    e = explain(model, as_input(data.test_images[idx:idx + 1]), "conv2", 0, (r, c))
    main = page.get_by_test_id("stMain")
    for number in (e["sum"], e["bias"], e["pre_activation"], e["value"]):
        expect(main.get_by_text(f"{number:.4f}").first).to_be_visible()
    assert page.locator(".js-plotly-plot").filter(has_text="input channel 5: window").count() == 1
    expect(page.get_by_text("Where it reads: the window on conv1_pool (every channel)")).to_be_visible()
    page.get_by_role("heading", name=re.compile("One value, explained")).scroll_into_view_if_needed()
    screenshot(page, "activations-explain-1280")
    page.set_viewport_size({"width": 1024, "height": 1000})
    page.wait_for_timeout(800)
    page.get_by_role("heading", name=re.compile("One value, explained")).scroll_into_view_if_needed()
    screenshot(page, "activations-explain-1024")
