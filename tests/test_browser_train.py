"""The Train page in Chromium: set it up, start, watch the curves grow, pause, leave and come back."""
import re
import time

from playwright.sync_api import expect

from browser import screenshot, wait_for_app

POINTS = "() => document.querySelector('.js-plotly-plot')?._fullData?.[0]?._length ?? 0"


def open_train_page(page, url):
    page.goto(url)
    wait_for_app(page)
    page.get_by_role("link", name="Train").first.click()
    expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible()
    wait_for_app(page)


def set_number(page, label, value):
    box = page.get_by_role("spinbutton", name=label)
    box.fill(str(value))
    box.press("Enter")
    expect(box).to_have_value(str(value))
    wait_for_app(page)


def points_when_changed(page, before: int, timeout_s: float = 20) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = page.evaluate(POINTS)
        if n != before:
            return n
        page.wait_for_timeout(100)
    raise AssertionError(f"the loss curve stayed at {before} points for {timeout_s} s")


def stops_growing(page, timeout_s: float = 15) -> bool:
    """True once the curve keeps its length for 1.5 s (a redraw already on its way may land first)."""
    deadline, last = time.monotonic() + timeout_s, page.evaluate(POINTS)
    while time.monotonic() < deadline:
        page.wait_for_timeout(1500)
        n = page.evaluate(POINTS)
        if n == last:
            return True
        last = n
    return False


def test_train_page_streams_pauses_and_survives_navigation(app_server, browser_page):
    page = browser_page
    open_train_page(page, app_server.url)
    page.get_by_role("combobox", name="Preset").click()
    page.get_by_role("option", name=re.compile("^modern")).click()
    expect(page.get_by_role("combobox", name="Activation")).to_have_value("relu")  # the preset set it
    wait_for_app(page)
    set_number(page, "Epochs", 40)
    # 256 tiny images in batches of 16: 16 steps an epoch, 640 in all: several seconds of curves,
    # long enough to see the progress line, pause, resume and change page while it trains.
    batch = page.get_by_role("slider", name="Batch size")
    batch.focus()
    batch.press("Home")
    batch.press("ArrowRight")
    expect(batch).to_have_attribute("aria-valuetext", "16")
    wait_for_app(page)

    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text(re.compile(r"run 1 · (training|loading data)"))).to_be_visible()
    expect(page.get_by_role("button", name="Start training")).to_be_disabled()
    first = points_when_changed(page, 0)
    second = points_when_changed(page, first)
    assert second > first, "the loss curve should grow while training"
    expect(page.get_by_text(re.compile(r"Epoch \d+ of 40 · step [\d,]+ of 640 · .* · CPU"))).to_be_visible()

    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_text("run 1 · paused")).to_be_visible()
    assert stops_growing(page), "a paused run must not train"
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_text("run 1 · training")).to_be_visible()

    # Leaving the page keeps the run going in the background; coming back shows it.
    page.get_by_role("link", name="Home").first.click()
    wait_for_app(page)
    page.get_by_role("link", name="Train").first.click()
    expect(page.get_by_text(re.compile(r"run 1 · (training|finished)"))).to_be_visible()
    expect(page.get_by_role("spinbutton", name="Epochs")).to_have_value("40")  # the controls are kept too

    expect(page.get_by_text("run 1 · finished")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("samples/s on average")).to_be_visible()
    expect(page.get_by_role("button", name="Start training")).to_be_enabled()
    assert page.evaluate(POINTS) > second
    wait_for_app(page)
    page.set_viewport_size({"width": 1400, "height": 2400})  # the app scrolls inside; show all of it
    page.wait_for_timeout(800)
    screenshot(page, "train")
