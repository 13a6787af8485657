"""Draw in Chromium: a stroke on the real canvas reaches the model and the page answers."""
import re

from playwright.sync_api import expect

from browser import screenshot, stroke, wait_for_app

UPDATE = re.compile(r"Update (\d+) · computed in (\d+) ms")


def updates(page) -> int:
    m = UPDATE.search(page.get_by_text("computed in").inner_text())
    return int(m.group(1))


def bar_lengths(page) -> list[float]:
    return page.evaluate("() => Array.from(document.querySelector('.js-plotly-plot').data[0].x)")


def test_draw_predicts_then_activations_show_the_drawing(app_server, browser_page):
    page = browser_page
    page.goto(app_server.url)  # the way in a user takes (see the note in the report about deep links)
    wait_for_app(page)
    page.get_by_role("link", name="Draw").first.click()
    wait_for_app(page)
    expect(page.get_by_text("Draw a digit on the black canvas")).to_be_visible()
    expect(page.locator("canvas.upper-canvas")).to_be_visible()

    stroke(page, [(0.3, 0.2), (0.72, 0.2), (0.45, 0.85)])  # a 7
    expect(page.get_by_text(re.compile(r"Update 1 · computed in"))).to_be_visible()
    prediction = page.locator(".draw-prediction")
    expect(prediction).to_have_text("7")
    expect(page.locator(".js-plotly-plot")).to_have_count(3)  # bars, conv1, conv2
    wait_for_app(page)
    first = bar_lengths(page)
    assert max(first) == first[7]

    old_canvas = page.locator("canvas.upper-canvas").element_handle()
    page.get_by_role("button", name="Clear").click()
    expect(page.get_by_text("Draw a digit on the black canvas")).to_be_visible()
    page.wait_for_function("el => !el.isConnected", arg=old_canvas)  # a stroke must go to the new canvas
    expect(page.locator("canvas.upper-canvas")).to_be_visible()
    wait_for_app(page)
    stroke(page, [(0.5, 0.15), (0.5, 0.85)])  # a 1
    expect(prediction).to_have_text("1")
    assert updates(page) == 2
    page.wait_for_function("() => { const d = document.querySelector('.js-plotly-plot').data[0].x;"
                           " return d[1] === Math.max(...d); }")
    wait_for_app(page)
    assert bar_lengths(page) != first
    # Streamlit scrolls inside the page, so a full-page shot is the viewport: make it tall.
    page.set_viewport_size({"width": 1400, "height": 1500})
    wait_for_app(page)
    screenshot(page, "draw")

    page.get_by_role("link", name="Activations").click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Activations")).to_be_visible()
    page.get_by_text("Current drawing").click()
    expect(page.get_by_text("your drawing from the Draw page")).to_be_visible()
    expect(page.locator(".js-plotly-plot")).to_have_count(2)  # conv1, conv2 with their filters
    wait_for_app(page)
    page.set_viewport_size({"width": 1400, "height": 2000})
    page.wait_for_timeout(500)  # let Plotly finish drawing before the screenshot
    screenshot(page, "activations")


VISIBLE_WIDTH = """c => { const r = c.getBoundingClientRect(); let left = r.left, right = r.right;
    for (let p = c.parentElement; p; p = p.parentElement) {
        const s = getComputedStyle(p);
        if (s.overflowX !== 'visible') { const q = p.getBoundingClientRect(); left = Math.max(left, q.left); right = Math.min(right, q.right); }
    }
    return right - left; }"""


def test_the_whole_canvas_shows_on_a_projector_sized_window(app_server, browser_page):
    """At 1024 pixels wide no column clips the 280-pixel canvas."""
    page = browser_page
    page.set_viewport_size({"width": 1024, "height": 768})
    page.goto(app_server.url)
    wait_for_app(page)
    page.get_by_role("link", name="Draw").first.click()
    wait_for_app(page)
    canvas = page.locator("canvas.upper-canvas")
    expect(canvas).to_be_visible()
    assert canvas.bounding_box()["width"] == 280
    assert canvas.evaluate(VISIBLE_WIDTH) >= 279.5
    screenshot(page, "draw-1024")
