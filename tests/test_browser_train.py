"""The Train page in Chromium against the real server: a run streams without reruns, survives a
reload and a second tab, pauses, resumes and stops; another browser neither sees it nor controls
it, and its own run waits in the queue; the panel survives a window resized mid-run."""
import re
import time

from playwright.sync_api import expect

from browser import screenshot, wait_for_app

LAST_STEP = ("() => { const x = document.querySelector('[data-chart=\"loss-per-step\"]')?._fullData?.[0]?.x; "
             "return x && x.length ? Number(x[x.length - 1]) : 0; }")


def open_train(page, url):
    page.goto(f"{url}/train")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible()


def set_number(page, label, value):
    box = page.get_by_role("spinbutton", name=label)
    box.fill(str(value))
    box.press("Enter")
    expect(box).to_have_value(str(value))
    wait_for_app(page)


def long_run_settings(page, epochs=200):
    """A modern LeNet wide enough that it is still training well after the test has acted on it."""
    page.get_by_role("button", name="modern", exact=True).click()
    wait_for_app(page)
    set_number(page, "conv1", 64)
    set_number(page, "conv2", 64)
    set_number(page, "Epochs", epochs)


def start(page):
    page.get_by_role("button", name="Start training").click()
    wait_for_app(page)


def last_step_when_changed(page, before: int, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = page.evaluate(LAST_STEP)
        if n != before:
            return n
        page.wait_for_timeout(100)
    raise AssertionError(f"the loss curve stayed at step {before} for {timeout_s} s")


def stops_growing(page, timeout_s: float = 15) -> bool:
    deadline, last = time.monotonic() + timeout_s, page.evaluate(LAST_STEP)
    while time.monotonic() < deadline:
        page.wait_for_timeout(1500)
        n = page.evaluate(LAST_STEP)
        if n == last:
            return True
        last = n
    return False


def stop_shown_run(page):
    stop = page.get_by_test_id("stMain").get_by_role("button", name="Stop", exact=True)
    if stop.is_visible():
        stop.click()
    expect(page.get_by_text(re.compile(r"· (stopped|finished)$")).first).to_be_visible(timeout=20_000)


def test_a_run_streams_survives_reloads_and_obeys_pause_resume_stop(app_server, browser_page):
    page = browser_page
    reads = []
    page.on("request", lambda r: reads.append(r.url) if "/lenet/runs/" in r.url else None)
    open_train(page, app_server.url)
    long_run_settings(page)
    start(page)
    expect(page.get_by_role("heading", name=re.compile(r"^modern · conv 64,64 · epochs 200 · training"))).to_be_visible(
        timeout=30_000)
    first = last_step_when_changed(page, 0)
    grown = last_step_when_changed(page, first)
    assert grown > first
    # While it trains, the panel reads the run's JSON every 2 s and moves its charts in place; the
    # page itself does not rerun (the list of runs below refreshes on its own, every 10 s).
    page.evaluate("() => { document.querySelector('[data-chart=\"loss-per-step\"]')._lenetMark = 'first'; }")
    seen_reads = len(reads)
    page.wait_for_timeout(5000)
    assert 2 <= len(reads) - seen_reads <= 4, f"{len(reads) - seen_reads} reads in 5 s"  # one every 2 s
    assert page.evaluate("() => document.querySelector('[data-chart=\"loss-per-step\"]')._lenetMark") == "first"
    assert last_step_when_changed(page, grown) > grown
    screenshot(page, "train-running-1280")

    # A reload is a new session of the same browser: the same run, still streaming, still controllable.
    page.reload()
    wait_for_app(page)
    expect(page.get_by_role("heading", name=re.compile(r"· training$"))).to_be_visible()
    at = page.evaluate(LAST_STEP)
    assert last_step_when_changed(page, at) > at
    expect(page.get_by_role("spinbutton", name="Epochs")).to_have_value("200")  # the controls come back too

    second_tab = page.context.new_page()
    open_train(second_tab, app_server.url)
    expect(second_tab.get_by_role("heading", name=re.compile(r"^modern · conv 64,64 · epochs 200 · training"))) \
        .to_be_visible()
    second_tab.close()

    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("heading", name=re.compile(r"· paused$"))).to_be_visible()
    assert stops_growing(page), "a paused run must not train"
    paused = page.evaluate(LAST_STEP)
    page.get_by_role("button", name="Resume", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"· training$"))).to_be_visible()
    assert last_step_when_changed(page, paused) > paused, "the curve should grow again after Resume"

    # Leaving the page and coming back: the run went on meanwhile.
    before = page.evaluate(LAST_STEP)
    page.get_by_role("link", name="Home").first.click()
    wait_for_app(page)
    page.wait_for_timeout(1500)
    page.get_by_role("link", name="Train").first.click()
    wait_for_app(page)
    assert last_step_when_changed(page, 0) > before
    stop_shown_run(page)
    expect(page.get_by_text("Stopped after")).to_be_visible()


def test_another_browser_neither_sees_nor_controls_a_run_and_its_own_waits(app_server, chromium):
    a, b = chromium.new_context(viewport={"width": 1280, "height": 900}), chromium.new_context(
        viewport={"width": 1280, "height": 900})
    try:
        page_a, page_b = a.new_page(), b.new_page()
        open_train(page_a, app_server.url)
        long_run_settings(page_a)
        start(page_a)
        expect(page_a.get_by_role("heading", name=re.compile(r"· training$"))).to_be_visible(timeout=30_000)
        with page_a.expect_request(re.compile(r"/lenet/runs/.+/live")) as read:  # the panel's next read
            pass
        run_url = read.value.url

        open_train(page_b, app_server.url)
        expect(page_b.get_by_role("heading", name=re.compile(r"^modern · conv 64,64"))).to_have_count(0)
        assert page_b.request.get(run_url).status == 404  # nor can it read A's run
        set_number(page_b, "Epochs", 1)
        page_b.get_by_role("combobox", name="Data set").click()
        page_b.get_by_role("option", name="MNIST digits").click()
        wait_for_app(page_b)
        start(page_b)
        expect(page_b.get_by_text(re.compile(r"Queued: next in line \(0 runs ahead of it\)"))).to_be_visible()
        screenshot(page_b, "train-queued-1280")
        # A queued run's panel reads at the panel's pace (every 2 s), not the quick pace of a run
        # that has just started: a room's queue would otherwise ask the server 4 times a second each.
        reads = []
        page_b.on("request", lambda r: reads.append(r.url) if "/lenet/runs/" in r.url else None)
        page_b.wait_for_timeout(5000)
        assert 2 <= len(reads) <= 4, f"{len(reads)} reads of a queued run in 5 s"
        stop_shown_run(page_a)
        expect(page_b.get_by_role("heading", name=re.compile(r"· (training|finished)$"))).to_be_visible(
            timeout=30_000)
        expect(page_b.get_by_role("heading", name=re.compile(r"· finished$"))).to_be_visible(timeout=60_000)
    finally:
        a.close()
        b.close()


def boxes(page, selector):
    return page.evaluate(f"() => [...document.querySelectorAll('{selector}')].map(e => {{"
                         "const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })")


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_layout(page, name):
    page.wait_for_timeout(1200)  # the charts follow their containers' new widths
    titles = [box for box in boxes(page, ".lenet-live-panel .gtitle") if box[2] > box[0]]
    assert len(titles) == 6, titles  # loss per step, per epoch, accuracy; units, spread, gradients
    assert not any(overlaps(p, q) for i, p in enumerate(titles) for q in titles[i + 1:]), titles
    panel = boxes(page, ".lenet-live-panel")[0]
    runs_heading = page.get_by_role("heading", name="Your runs").bounding_box()
    assert runs_heading["y"] >= panel[3], f"'Your runs' at {runs_heading['y']} over the panel ending at {panel[3]}"
    for chart in boxes(page, ".lenet-live-panel .main-svg"):
        assert chart[2] <= panel[2] + 1, "a chart wider than its panel"
    screenshot(page, name)


def test_the_panel_survives_a_window_resized_during_and_after_a_run(app_server, browser_page):
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})
    open_train(page, app_server.url)
    long_run_settings(page)
    start(page)
    expect(page.get_by_role("heading", name=re.compile(r"· training$"))).to_be_visible(timeout=30_000)
    last_step_when_changed(page, 0)
    for width in (1280, 1024, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        check_layout(page, f"train-resize-{width}-running")
    stop_shown_run(page)
    wait_for_app(page)
    for width in (1024, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        check_layout(page, f"train-resize-{width}-stopped")
