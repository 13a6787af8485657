"""Draw in Chromium: the model runs in the browser while the pen moves, the server answers when it
lifts, and both give the same answer; a browser that cannot run the model falls back to the server."""
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from playwright.sync_api import expect

import lenet_core.data
from browser import CANVAS, canvas_box, screenshot, stroke, wait_for_app
from lenet_core.activations import predict_proba
from lenet_core.checkpoint import Checkpoint, load_checkpoint
from lenet_core.model import LeNet, ModelConfig
from lenet_core.preprocess import digit_from_rgba, image_to_tensor, png_data_url_to_rgba
from lenet_core.runs import Run
from lenet_core.train import TrainConfig

PROBES = ("blank", "noise", "inverted", "shifted 6 px right", "rotated 30°")
PROBE_ANSWER = re.compile(r"^(blank|noise|inverted|shifted 6 px right|rotated 30°): (\w+) \((\d+)%\)$")
SEVEN = [(0.3, 0.2), (0.72, 0.2), (0.45, 0.85)]
ONE = [(0.5, 0.15), (0.5, 0.85)]
SHAPES = [SEVEN, [(0.35, 0.3), (0.5, 0.15), (0.62, 0.3), (0.35, 0.85), (0.68, 0.85)],  # a 2
          [(0.6, 0.2), (0.38, 0.5), (0.45, 0.8), (0.65, 0.7), (0.42, 0.5)]]            # a 6
ODD = ModelConfig(conv_channels=(6, 12, 16), kernel_size=3, activation="tanh", pooling="max")
ROOT = Path(__file__).resolve().parents[1]


def open_draw(page, url: str) -> None:
    page.goto(f"{url}/draw")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Draw", exact=True)).to_be_visible()
    expect(page.locator(CANVAS)).to_be_visible()


def pad_until(page, condition: str, timeout: float = 15_000) -> None:
    """Wait until `condition` (JS, of the canvas's state `p`) holds. The component lives in a
    shadow root, which Playwright's locators reach and document.querySelector does not."""
    handle = page.locator(".ld").element_handle()
    page.wait_for_function(f"el => {{ const p = el.__lenet; return !!(p && ({condition})); }}", arg=handle,
                           timeout=timeout)


def wait_live(page, model_part: str = "") -> None:
    """Until the browser runs the picked model (its URL holds `model_part`)."""
    pad_until(page, f"p.live === 'ready' && p.session && (p.modelUrl || '').includes({model_part!r})", 90_000)


def browser_answer(page) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the canvas's pixels, the browser's 28x28 image, its probabilities), once no prediction runs
    or is due: the last one shown is of the canvas as it is."""
    pad_until(page, "!p.busy && p.due === null")
    got = page.locator(".ld").evaluate("el => { const p = el.__lenet; return { png: p.canvas.toDataURL('image/png'), "
                                       "image: Array.from(p.image), probs: p.probs }; }")
    return (png_data_url_to_rgba(got["png"]), np.array(got["image"], np.float32).reshape(28, 28),
            np.array(got["probs"], np.float64))


def clear(page) -> None:
    page.locator(".ld-clear").click()
    wait_for_app(page)
    expect(page.locator(".ld")).to_have_attribute("data-prediction", "")


def pick_model(page, label_start: str) -> None:
    page.get_by_role("combobox", name="Model").click()
    page.get_by_role("option", name=re.compile("^" + re.escape(label_start))).click()
    wait_for_app(page)


def probe_answers(page) -> dict[str, str]:
    main = page.get_by_test_id("stMain")
    texts = [t.inner_text().strip() for t in main.get_by_text(PROBE_ANSWER).all()]
    return {m.group(1): m.group(2) for m in map(PROBE_ANSWER.match, texts)}


def test_prediction_follows_the_pen_then_the_server_explains_the_stroke(app_server, browser_page):
    page = browser_page
    elsewhere = []  # a classroom may be offline: the runtime and the model come from the app itself
    page.on("request", lambda r: None if r.url.startswith(("data:", "blob:", app_server.url)) else elsewhere.append(r.url))
    open_draw(page, app_server.url)
    expect(page.get_by_text("Draw one digit:")).to_be_visible()
    expect(page.locator(".ld-hint")).to_contain_text("Draw a digit on the black canvas")
    wait_live(page, "shipped/digits")

    # A 7, the pen still down: the canvas predicts, and the server has not been asked anything.
    box = canvas_box(page)
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in SEVEN]
    page.mouse.move(*xy[0])
    page.mouse.down()
    page.mouse.move(*xy[1], steps=10)
    expect(page.locator(".ld")).to_have_attribute("data-prediction", re.compile(r"^\d$"))
    page.mouse.move(*xy[2], steps=10)
    expect(page.locator(".ld-prediction")).to_have_text("7")
    assert int(page.locator(".ld").get_attribute("data-updates")) >= 10  # one per move, about
    expect(page.locator(".ld-bar.ld-best .ld-bar-name")).to_have_text("7")
    expect(page.locator(".ld-layer[data-layer='1'] canvas.ld-map")).to_have_count(6)
    expect(page.locator(".ld-layer[data-layer='2'] canvas.ld-map")).to_have_count(16)
    expect(page.locator(".ld-layer[data-layer='1'] .ld-layer-title")).to_have_text("conv1: 6 maps, 28x28")
    assert page.locator(".draw-done").get_attribute("data-update") == "0"  # no stroke sent yet
    screenshot(page, "draw-1400-drawing")
    page.mouse.up()

    # Pen up: one message, and the server's half of the page for that drawing.
    expect(page.locator(".draw-done")).to_have_attribute("data-update", "1")
    expect(page.get_by_role("heading", name="Which pixels made it say 7")).to_be_visible()
    expect(page.locator(".st-key-draw-attr-figure .js-plotly-plot .heatmaplayer image")).to_have_count(2)
    expect(page.get_by_test_id("stMain").get_by_text(PROBE_ANSWER)).to_have_count(5)
    assert list(probe_answers(page)) == list(PROBES)
    expect(page.locator(".draw-prediction")).to_have_count(0)  # the canvas showed it: no second one
    expect(page.locator(".st-key-draw_conv1")).to_have_count(0)
    assert page.locator(".ld-prediction").inner_text() == "7"  # the canvas kept its drawing across the rerun
    assert not elsewhere, elsewhere

    clear(page)
    expect(page.locator(".ld-hint")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("^Which pixels"))).to_have_count(0)
    stroke(page, ONE)
    expect(page.locator(".ld-prediction")).to_have_text("1")
    expect(page.locator(".draw-done")).to_have_attribute("data-update", "2")
    expect(page.get_by_role("heading", name="Which pixels made it say 1")).to_be_visible()

    # Activations' "your drawing" is the last stroke's image.
    page.get_by_role("link", name="Activations").click()
    wait_for_app(page)
    page.get_by_role("combobox", name="Input").click()
    page.get_by_role("option", name="Current drawing").click()
    expect(page.get_by_text("your drawing from the Draw page")).to_be_visible()
    wait_for_app(page)
    for layer in (1, 2):
        expect(page.locator(f".st-key-act_conv{layer} .js-plotly-plot")).to_be_visible()


@pytest.fixture
def odd_run(app_env, tmp_path):
    """A run from the command line (every browser sees it) with 3 conv layers, kernel 3, tanh and
    max pooling; its weights scaled up from their init, so the answers are far from uniform."""
    torch.manual_seed(3)
    model = LeNet(ODD)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    config = TrainConfig(model=ODD, dataset="mnist")
    # Made finished elsewhere, then moved in: the server's pool trains any queued run it finds.
    made = Run.create(config, tmp_path, name="odd net")
    made.save_checkpoint(Checkpoint(config, model, "mnist", lenet_core.data.DATASETS["mnist"][2]))
    made.set_status("finished", "Finished.")
    run = Run(shutil.move(made.path, Path(app_env["LENET_RUNS_DIR"]) / made.path.name))
    yield run, model.eval()
    shutil.rmtree(run.path, ignore_errors=True)


def test_browser_and_python_give_one_answer(app_server, browser_page, odd_run):
    """For the same strokes, the browser's 28x28 image is Python's digit_from_rgba of the canvas and
    its probabilities are PyTorch's, for each shipped model and an odd architecture."""
    page = browser_page
    run, odd = odd_run
    open_draw(page, app_server.url)
    cases = [("Digits", "shipped/digits", load_checkpoint(ROOT / "models/digits/checkpoint.pt").model),
             ("Fashion classic", "shipped/fashion-classic",
              load_checkpoint(ROOT / "models/fashion-classic/checkpoint.pt").model),
             ("Fashion modern", "shipped/fashion-modern",
              load_checkpoint(ROOT / "models/fashion-modern/checkpoint.pt").model),
             ("odd net", f"run/{run.id}", odd)]
    checked = 0
    for label, url_part, model in cases:
        pick_model(page, label)
        wait_live(page, url_part)
        for shape in SHAPES:
            clear(page)
            stroke(page, shape)
            rgba, image, probs = browser_answer(page)
            python_image = digit_from_rgba(rgba)
            assert np.abs(image - python_image).max() <= 0.02, (label, np.abs(image - python_image).max())
            torch_probs = predict_proba(model.eval(), image_to_tensor(python_image))[0].numpy()
            assert np.abs(probs - torch_probs).max() <= 1e-4, (label, np.abs(probs - torch_probs).max())
            assert page.locator(".ld").get_attribute("data-prediction") == \
                lenet_core.data.DATASETS[model_dataset(label)][2][int(torch_probs.argmax())]
            checked += 1
        if label == "odd net":  # conv1 padded (28x28), pooled to 14x14, conv2 unpadded: 12x12
            expect(page.locator(".ld-layer[data-layer='2'] .ld-layer-title")).to_have_text("conv2: 12 maps, 12x12")
            screenshot(page, "draw-odd-architecture")
    assert checked == 12


def model_dataset(label: str) -> str:
    return "fashion-mnist" if label.startswith("Fashion") else "mnist"


def test_a_browser_that_cannot_run_the_model_gets_the_servers_answer(app_server, chromium):
    """The runtime's wasm fails to load (an old browser, a network error): one line says so, and
    each stroke is answered by the server on pen-up, as before the canvas ran the model."""
    context = chromium.new_context(viewport={"width": 1280, "height": 1600})
    try:
        page = context.new_page()
        page.route("**/lenet/ort/*.wasm", lambda route: route.abort())
        open_draw(page, app_server.url)
        expect(page.locator(".ld")).to_have_attribute("data-live", "off", timeout=60_000)
        note = page.locator(".ld-note")
        expect(note).to_be_visible()
        assert note.inner_text().startswith("Live prediction is off in this browser")
        assert len(note.inner_text().splitlines()) == 1
        assert "wasm" in note.get_attribute("title")  # the runtime's own words, on hover
        stroke(page, SEVEN)
        expect(page.locator(".draw-prediction")).to_have_text("7")
        expect(page.locator(".draw-done")).to_have_attribute("data-update", "1")
        expect(page.get_by_role("heading", name="Which pixels made it say 7")).to_be_visible()
        expect(page.locator(".st-key-draw_bars .js-plotly-plot")).to_have_count(1)
        expect(page.locator(".st-key-draw_conv2 .js-plotly-plot")).to_have_count(1)
        assert page.locator(".ld").get_attribute("data-updates") == "0"
        wait_for_app(page)
        page.wait_for_timeout(300)
        screenshot(page, "draw-1280-fallback")
    finally:
        context.close()


VISIBLE_WIDTH = """c => { const r = c.getBoundingClientRect(); let left = r.left, right = r.right;
    for (let p = c.parentElement; p; p = p.parentElement) {
        const s = getComputedStyle(p);
        if (s.overflowX !== 'visible') { const q = p.getBoundingClientRect(); left = Math.max(left, q.left); right = Math.min(right, q.right); }
    }
    return right - left; }"""


def inside(page, width: int) -> None:
    """Nothing of the canvas's panel runs off the right edge; the canvas is whole."""
    canvas = page.locator(CANVAS)
    assert canvas.bounding_box()["width"] == 280
    assert canvas.evaluate(VISIBLE_WIDTH) >= 279.5
    for part in (".ld-bars-box", ".ld-layer[data-layer='2']", ".ld-sees"):
        b = page.locator(part).bounding_box()
        assert b["x"] >= 0 and b["x"] + b["width"] <= width, (width, part, b)


@pytest.mark.parametrize("width", [1280, 1024])
def test_draw_while_drawing_on_a_projector_sized_window(app_server, chromium, width):
    context = chromium.new_context(viewport={"width": width, "height": 1100})
    try:
        page = context.new_page()
        open_draw(page, app_server.url)
        wait_live(page, "shipped/digits")
        box = canvas_box(page)
        xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in SEVEN]
        page.mouse.move(*xy[0])
        page.mouse.down()
        for x, y in xy[1:]:
            page.mouse.move(x, y, steps=10)
        expect(page.locator(".ld-prediction")).to_have_text("7")
        inside(page, width)
        screenshot(page, f"draw-{width}-drawing")
        page.mouse.up()
        expect(page.get_by_role("heading", name="Which pixels made it say 7")).to_be_visible()
        wait_for_app(page)
        page.set_viewport_size({"width": width, "height": 2000})
        page.wait_for_timeout(500)
        inside(page, width)
        screenshot(page, f"draw-{width}")
    finally:
        context.close()


def test_a_finger_draws_on_a_tablet(app_server, chromium):
    """A touch-emulated 1024x768 tablet: touch events become pointer events, the page does not
    scroll under the finger, and the prediction follows it."""
    context = chromium.new_context(viewport={"width": 1024, "height": 768}, has_touch=True, is_mobile=True,
                                   device_scale_factor=2)
    try:
        page = context.new_page()
        open_draw(page, app_server.url)
        wait_live(page, "shipped/digits")
        page.locator(CANVAS).scroll_into_view_if_needed()
        box = canvas_box(page)
        cdp = context.new_cdp_session(page)
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in SEVEN]
        path = [points[0]] + [(a[0] + (b[0] - a[0]) * t / 10, a[1] + (b[1] - a[1]) * t / 10)
                              for a, b in zip(points, points[1:]) for t in range(1, 11)]
        scroll = page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollTop")
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": path[0][0], "y": path[0][1]}]})
        for x, y in path[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
            page.wait_for_timeout(16)
        expect(page.locator(".ld-prediction")).to_have_text("7")
        assert page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollTop") == scroll
        assert page.locator(".draw-done").get_attribute("data-update") == "0"
        screenshot(page, "draw-tablet-1024x768-drawing")
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        expect(page.locator(".draw-done")).to_have_attribute("data-update", "1")
        expect(page.get_by_role("heading", name="Which pixels made it say 7")).to_be_visible()
    finally:
        context.close()
