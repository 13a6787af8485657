"""The Train page in Chromium: set it up, start, watch the curves grow, pause, leave and come back."""
import re
import time

from playwright.sync_api import expect

from browser import screenshot, wait_for_app

# The step of the loss curve's last point (its length stops growing once the curve is downsampled).
LAST_STEP = "() => { const x = document.querySelector('.js-plotly-plot')?._fullData?.[0]?.x; " \
            "return x && x.length ? Number(x[x.length - 1]) : 0; }"
# The SVG path of the loss chart's smoothed line, as drawn on the page.
DRAWN_LINE = "() => document.querySelectorAll('[data-chart=\"loss-per-step\"] .scatterlayer .trace')[1]" \
             "?.querySelector('path.js-line')?.getAttribute('d') ?? ''"


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


def last_step_when_changed(page, before: int, timeout_s: float = 20) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = page.evaluate(LAST_STEP)
        if n != before:
            return n
        page.wait_for_timeout(100)
    raise AssertionError(f"the loss curve stayed at step {before} for {timeout_s} s")


def stops_growing(page, timeout_s: float = 15) -> bool:
    """True once the curve keeps its length for 1.5 s (a redraw already on its way may land first)."""
    deadline, last = time.monotonic() + timeout_s, page.evaluate(LAST_STEP)
    while time.monotonic() < deadline:
        page.wait_for_timeout(1500)
        n = page.evaluate(LAST_STEP)
        if n == last:
            return True
        last = n
    return False


def test_train_page_streams_pauses_and_survives_navigation(app_server, browser_page):
    page = browser_page
    messages, feed_reads = [], []  # messages from the server; reads of the run's live feed
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: messages.append(frame)))
    page.on("request", lambda r: feed_reads.append(r.url) if "/app/static/live/" in r.url else None)
    open_train_page(page, app_server.url)
    page.get_by_role("combobox", name="Preset").click()
    page.get_by_role("option", name=re.compile("^modern")).click()
    expect(page.get_by_role("combobox", name="Activation")).to_have_value("relu")  # the preset set it
    wait_for_app(page)
    # 256 tiny images in batches of 16 for 200 epochs: 3,200 steps, with 128 channels in both conv
    # layers (about 150x the work of modern's 6 and 16: over a minute here) so that even a fast
    # machine is still training well after the run resumes; it is stopped by hand once the
    # navigation has been checked.
    set_number(page, "conv1", 128)
    set_number(page, "conv2", 128)
    set_number(page, "Epochs", 200)
    batch = page.get_by_role("slider", name="Batch size")
    batch.focus()
    batch.press("Home")
    batch.press("ArrowRight")
    expect(batch).to_have_attribute("aria-valuetext", "16")
    wait_for_app(page)

    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text(re.compile(r"run 1 · (training|loading data)"))).to_be_visible()
    expect(page.get_by_role("button", name="Start training")).to_be_disabled()
    expect(page.get_by_text(re.compile(r"Epoch \d+ of 200 · step [\d,]+ of 3,200 · .* · CPU"))).to_be_visible()
    first = last_step_when_changed(page, 0)
    assert first > 0, "the loss curve should appear while training"
    # The chart is updated in place, not rebuilt at each redraw (lenet_app/live_chart.py).
    page.evaluate("() => { document.querySelector('.js-plotly-plot')._lenetMark = 'first'; }")
    line = page.evaluate(DRAWN_LINE)
    grown = last_step_when_changed(page, first)
    assert grown > first
    page.wait_for_timeout(300)  # the line is redrawn in the next animation frame
    assert page.evaluate(DRAWN_LINE) not in ("", line), "the drawn line should follow the curve's new points"
    assert page.evaluate("() => document.querySelector('.js-plotly-plot')._lenetMark") == "first", \
        "the live chart was rebuilt instead of updated"
    # While the run trains, nothing reruns the page: the browser reads the run's feed, about twice a second.
    seen_messages, seen_reads = len(messages), len(feed_reads)
    page.wait_for_timeout(3000)
    assert len(feed_reads) - seen_reads >= 4, f"{len(feed_reads) - seen_reads} feed reads in 3 s"
    assert len(messages) == seen_messages, "the page reran while the run trained"
    assert last_step_when_changed(page, grown) > grown
    # A feed that has gone missing (here: one read answered 404) makes the panel ask for a rerun;
    # the run still trains, so the rerun gives it the feed again and the curve goes on growing.
    missing = []

    def answer_404_once(route):
        if missing:
            return route.continue_()
        missing.append(route.request.url)
        route.fulfill(status=404, body="gone")

    page.route("**/app/static/live/**", answer_404_once)
    seen_messages = len(messages)
    page.wait_for_timeout(1500)
    assert missing and len(messages) > seen_messages, "a missing feed should rerun the page"
    wait_for_app(page)
    at = page.evaluate(LAST_STEP)
    assert last_step_when_changed(page, at) > at, "the panel should read its feed again after the rerun"
    page.unroute("**/app/static/live/**")

    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_text("run 1 · paused")).to_be_visible()
    assert stops_growing(page), "a paused run must not train"
    paused = page.evaluate(LAST_STEP)
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_text("run 1 · training")).to_be_visible()
    resumed = last_step_when_changed(page, paused)
    assert resumed > paused, "the loss curve should grow again after Resume"

    # Leaving the page keeps the run going in the background; coming back shows it, further on.
    page.get_by_role("link", name="Home").first.click()
    wait_for_app(page)
    page.wait_for_timeout(1000)
    page.get_by_role("link", name="Train").first.click()
    expect(page.get_by_text(re.compile(r"run 1 · (training|finished)"))).to_be_visible()
    expect(page.get_by_role("spinbutton", name="Epochs")).to_have_value("200")  # the controls are kept too
    assert last_step_when_changed(page, 0) > resumed, "the run should have trained while the page was away"

    stop = page.get_by_role("button", name="Stop")
    if stop.is_visible():  # a very fast machine may have finished all 200 epochs by now
        stop.click()
    expect(page.get_by_text(re.compile(r"run 1 · (stopped|finished)"))).to_be_visible()
    expect(page.get_by_text("samples/s on average")).to_be_visible()
    expect(page.get_by_role("button", name="Start training")).to_be_enabled()

    # A short second run goes to the end and joins the first in the comparison.
    set_number(page, "Epochs", 3)
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text("run 2 · finished")).to_be_visible(timeout=60_000)
    expect(page.get_by_text(re.compile(r"3 of 3 epochs in .* samples/s on average"))).to_be_visible()
    expect(page.get_by_role("button", name="Start training")).to_be_enabled()
    wait_for_app(page)
    # Both runs are ticked in the overlay, and its legend names both (the second was drawn empty
    # while it trained, so its legend entry appears only with a full redraw of the chart).
    legend = page.locator(".lenet-live-chart .legendtext")
    expect(legend).to_have_text(["run 1", "run 2"])
    page.set_viewport_size({"width": 1400, "height": 2400})  # the app scrolls inside; show all of it
    page.wait_for_timeout(800)
    screenshot(page, "train")
