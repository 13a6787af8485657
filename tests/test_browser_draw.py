"""Draw in Chromium: a stroke on the real canvas reaches the model and the page answers."""
import re

from playwright.sync_api import expect

from browser import screenshot, stroke, wait_for_app

PROBES = ("blank", "noise", "inverted", "shifted 6 px right", "rotated 30°")
PROBE_ANSWER = re.compile(r"^(blank|noise|inverted|shifted 6 px right|rotated 30°): (\d) \((\d+)%\)$")


def bar_lengths(page) -> list[float]:
    return page.evaluate("() => Array.from(document.querySelector('.st-key-draw_bars .js-plotly-plot').data[0].x)")


def open_draw(page, url: str) -> None:
    page.goto(f"{url}/draw")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Draw", exact=True)).to_be_visible()
    expect(page.locator("canvas.upper-canvas")).to_be_visible()


def probe_answers(page) -> dict[str, str]:
    main = page.get_by_test_id("stMain")
    texts = [t.inner_text().strip() for t in main.get_by_text(PROBE_ANSWER).all()]
    return {m.group(1): m.group(2) for m in map(PROBE_ANSWER.match, texts)}


def boxes_apart(boxes) -> bool:
    return all(a["x"] + a["width"] <= b["x"] + 0.5 or b["x"] + b["width"] <= a["x"] + 0.5
               or a["y"] + a["height"] <= b["y"] + 0.5 or b["y"] + b["height"] <= a["y"] + 0.5
               for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_draw_predicts_explains_and_probes_then_activations_show_the_drawing(app_server, browser_page):
    page = browser_page
    open_draw(page, app_server.url)
    expect(page.get_by_text("Draw one digit:")).to_be_visible()
    expect(page.get_by_text("Draw a digit on the black canvas")).to_be_visible()

    stroke(page, [(0.3, 0.2), (0.72, 0.2), (0.45, 0.85)])  # a 7
    prediction = page.locator(".draw-prediction")
    expect(prediction).to_have_text("7")
    expect(prediction).to_have_attribute("data-update", "1")
    expect(page.locator(".draw-done")).to_have_attribute("data-ms", re.compile(r"^\d+$"))  # hidden, for benchmarks
    expect(page.locator(".draw-done")).to_have_attribute("data-update", "1")
    expect(page.locator(".js-plotly-plot")).to_have_count(4)  # bars, attribution, conv1, conv2
    wait_for_app(page)
    first = bar_lengths(page)
    assert max(first) == first[7]

    # Which pixels made it say 7: the map over the drawing, drawn by plotly.js, and what it is.
    expect(page.get_by_role("heading", name="Which pixels made it say 7")).to_be_visible()
    attribution = page.locator(".st-key-draw-attr-figure .js-plotly-plot")
    expect(attribution.locator(".heatmaplayer image")).to_have_count(2)  # the drawing and the map over it
    assert attribution.evaluate("p => p.data.map(t => t.type)") == ["heatmap", "heatmap"]
    expect(page.get_by_text(re.compile(r"^Saliency for 7: How strongly"))).to_be_visible()
    target = page.locator(".st-key-draw-attr-target input")
    expect(target).to_have_value("the predicted class")
    # The probe inputs: five images, each with the model's answer.
    expect(page.get_by_test_id("stMain").get_by_text(PROBE_ANSWER)).to_have_count(5)
    assert list(probe_answers(page)) == list(PROBES)

    old_canvas = page.locator("canvas.upper-canvas").element_handle()
    page.get_by_role("button", name="Clear", exact=True).click()
    expect(page.get_by_text("Draw a digit on the black canvas")).to_be_visible()
    page.wait_for_function("el => !el.isConnected", arg=old_canvas)  # a stroke must go to the new canvas
    expect(page.locator("canvas.upper-canvas")).to_be_visible()
    expect(page.locator(".js-plotly-plot")).to_have_count(0)
    wait_for_app(page)
    stroke(page, [(0.5, 0.15), (0.5, 0.85)])  # a 1
    expect(prediction).to_have_text("1")
    expect(prediction).to_have_attribute("data-update", "2")
    expect(page.get_by_role("heading", name="Which pixels made it say 1")).to_be_visible()
    page.wait_for_function("() => { const d = document.querySelector('.st-key-draw_bars .js-plotly-plot')"
                           ".data[0].x; return d[1] === Math.max(...d); }")
    wait_for_app(page)
    assert bar_lengths(page) != first
    expect(page.get_by_text(re.compile(r"^Saliency for 1: "))).to_be_visible()
    expect(target).to_have_value("the predicted class")  # not an empty select once the drawing is back

    # Streamlit scrolls inside the page, so a full-page shot is the viewport: make it tall.
    for width, height in ((1280, 1700), (1024, 1900)):
        page.set_viewport_size({"width": width, "height": height})
        wait_for_app(page)
        page.wait_for_timeout(500)  # let Plotly redraw at the new width
        # Nothing runs off the right edge, and the probe images do not overlap.
        for chart in page.locator(".js-plotly-plot").all():
            box = chart.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, (width, box)
        probes = page.locator("[data-testid='stImage'] img").all()[-5:]
        boxes = [p.bounding_box() for p in probes]
        assert all(b["width"] >= 48 and b["x"] + b["width"] <= width for b in boxes), (width, boxes)
        assert boxes_apart(boxes), (width, boxes)
        screenshot(page, f"draw-{width}")

    page.set_viewport_size({"width": 1400, "height": 2000})
    page.get_by_role("link", name="Activations").click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Activations")).to_be_visible()
    page.get_by_role("combobox", name="Input").click()
    page.get_by_role("option", name="Current drawing").click()
    expect(page.get_by_text("your drawing from the Draw page")).to_be_visible()
    wait_for_app(page)
    for layer in (1, 2):  # with their filters
        expect(page.locator(f".st-key-act_conv{layer} .js-plotly-plot")).to_have_count(1)
        expect(page.locator(f".st-key-act_conv{layer} .js-plotly-plot")).to_be_visible()
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
    open_draw(page, app_server.url)
    canvas = page.locator("canvas.upper-canvas")
    assert canvas.bounding_box()["width"] == 280
    assert canvas.evaluate(VISIBLE_WIDTH) >= 279.5
    screenshot(page, "draw-1024-blank")
