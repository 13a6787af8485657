"""The Draw page under AppTest: a drawing arrives in the canvas component's state, as a browser
sends it when a stroke ends: the canvas as a PNG (no model in the browser, which is also the case
under AppTest, where nothing serves the model) or the 28x28 image the browser made (live)."""
import base64
import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

import lenet_core.data
from charts import array, chart, chart_keys
from lenet_app import models, probe_inputs
from lenet_app.session import owner_of
from lenet_core.activations import predict_proba
from lenet_core.attribution import METHODS, attribute, methods_for
from lenet_core.checkpoint import Checkpoint
from lenet_core.data import DIGIT_CLASSES
from lenet_core.model import LeNet, ModelConfig
from lenet_core.preprocess import digit_from_rgba, image_to_tensor, rgba_to_png_data_url
from lenet_core.runs import Run
from lenet_core.train import TrainConfig

APP = Path(__file__).resolve().parents[1] / "lenet_lab.py"
DRAW = "views/draw.py"
STROKES = {"7": [(80, 50), (200, 50), (120, 240)], "1": [(140, 40), (140, 240)]}
PROBES = ["blank", "noise", "inverted", "shifted 6 px right", "rotated 30°"]


_strokes = itertools.count(1)


def drawing(digit: str) -> np.ndarray:
    """A 280x280 canvas as the Draw canvas draws it: white strokes on black."""
    img = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    ImageDraw.Draw(img).line(STROKES[digit], fill=(255, 255, 255, 255), width=18, joint="curve")
    return np.asarray(img)


def canvas_value(rgba: np.ndarray | None) -> dict:
    """The canvas component's state after a stroke, from a browser that cannot run the model."""
    if rgba is None:
        return {"drawing": None}
    return {"drawing": {"n": next(_strokes), "live": False, "png": rgba_to_png_data_url(rgba)}}


def live_value(image: np.ndarray) -> dict:
    """The state a browser running the model sends: its own 28x28 image, float32, base64."""
    raw = np.asarray(image, dtype="<f4").tobytes()
    return {"drawing": {"n": next(_strokes), "live": True, "image": base64.b64encode(raw).decode()}}


@pytest.fixture
def no_data(offline, monkeypatch):
    """No data set anywhere, and no download: the Draw page must not need one."""
    (offline / "data").mkdir()
    monkeypatch.setenv("LENET_DATA_DIR", str(offline / "data"))


def open_draw(token: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    if token is not None:
        at.session_state["lenet_session_token"] = token  # one browser (AppTest has no cookies)
    at.run()
    at.switch_page(DRAW).run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def draw_page(no_data):
    return open_draw()


def draw(at, digit: str) -> np.ndarray:
    """Hand the page a drawing; returns the 28x28 image the model should see."""
    rgba = drawing(digit)
    at.session_state["draw_pad"] = canvas_value(rgba)
    at.run()
    assert not at.exception, at.exception
    return digit_from_rgba(rgba)


def prediction_div(at) -> dict | None:
    """The prediction's text and its data- attributes (update counter, milliseconds)."""
    for md in at.markdown:
        if 'class="draw-prediction"' in md.value:
            attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', md.value))
            return {**attrs, "text": md.value.split(">", 1)[1].rsplit("</div>", 1)[0]}
    return None


def prediction(at) -> str | None:
    div = prediction_div(at)
    return None if div is None else div["text"]


def reference(key: str):
    """The model the page should use, as the app loaded it (models/ may be regenerated meanwhile)."""
    return models.shipped_models()[key].model


def probs_of(model, img: np.ndarray) -> np.ndarray:
    return predict_proba(model, image_to_tensor(img))[0].numpy()


def test_blank_canvas_asks_for_a_drawing(draw_page):
    at = draw_page
    assert at.title[0].value == "Draw"
    assert at.selectbox(key="model").value == "shipped:digits"
    assert [c.value for c in at.caption] == ["Draw one digit:"]
    assert any("Draw a digit" in i.value for i in at.info)
    assert prediction_div(at) is None
    assert len(at.get("plotly_chart")) == 0
    assert at.session_state["draw_image"] is None
    assert at.session_state["draw_updates"] == 0


@pytest.mark.parametrize("digit", ["7", "1"])
def test_drawing_gives_the_models_prediction(draw_page, digit):
    at = draw_page
    img = draw(at, digit)

    # The reference: the same preprocessing and model, outside the app.
    model = reference("shipped:digits")
    p = probs_of(model, img)
    expected = int(p.argmax())
    div = prediction_div(at)
    assert div["text"] == str(expected)
    assert expected == int(digit)  # a clean drawing of a digit: a digit model must get it
    assert div["update"] == "1"
    done = next(h.proto.body for h in at.get("html") if 'class="draw-done"' in h.proto.body)  # the hidden last element
    assert 'data-update="1"' in done and 0 <= int(re.search(r'data-ms="(\d+)"', done).group(1)) < 60_000
    assert any(m.value == f"{p[expected]:.0%} sure" for m in at.markdown)
    assert chart_keys(at) == ["draw_bars", "draw.attr.figure", "draw_conv1", "draw_conv2"]
    bars = chart(at, "draw_bars")["data"][0]
    assert np.allclose(array(bars["x"]), p, atol=1e-5)  # every class's probability, as the model gives it
    assert [s.value for s in at.subheader][0] == f"Which pixels made it say {digit}"
    stored = at.session_state["draw_image"]
    assert stored.shape == (28, 28) and stored.dtype == np.float32 and np.array_equal(stored, img)


def test_a_live_drawing_gets_the_servers_analysis_not_a_second_prediction(draw_page):
    """A browser that ran the model sends its 28x28 image when the stroke ends: the page answers
    with attribution and probes for that very image, and leaves prediction, bars and maps to the
    canvas, which drew them while the pen moved."""
    at = draw_page
    img = digit_from_rgba(drawing("7"))
    at.session_state["draw_pad"] = live_value(img)
    at.run()
    assert not at.exception and not at.error
    assert prediction_div(at) is None
    assert chart_keys(at) == ["draw.attr.figure"]
    assert [s.value for s in at.subheader] == ["Which pixels made it say 7"]
    assert np.array_equal(at.session_state["draw_image"], img)  # Activations' "current drawing"
    assert at.session_state["draw_updates"] == 1
    done = next(h.proto.body for h in at.get("html") if 'class="draw-done"' in h.proto.body)
    assert 'data-update="1"' in done


@pytest.mark.parametrize("value, words", [
    ("a string", "not a drawing"),
    ({"n": 1, "live": True, "image": "AAAA"}, "not a 28x28 image"),
    ({"n": 1, "live": True, "image": "!" * 100}, "not base64"),
    ({"n": 1, "live": True, "image": "A" * 100_000}, "wrong size"),
    ({"n": 1, "live": True, "image": base64.b64encode(np.full(784, np.nan, "<f4").tobytes()).decode()}, "not numbers"),
    ({"n": 1, "live": False, "png": "data:image/png;base64," + "A" * 2_000_000}, "too large"),
    ({"n": 1, "live": False, "png": "data:text/html,hello"}, "data URL"),
])
def test_a_drawing_no_browser_of_this_app_sends_gets_one_line(draw_page, value, words):
    at = draw_page
    at.session_state["draw_pad"] = {"drawing": value}
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and words in at.error[0].value and at.error[0].value.startswith("That drawing")
    assert at.session_state["draw_image"] is None and prediction_div(at) is None


def test_same_drawing_twice_counts_once_and_clear_empties(draw_page):
    at = draw_page
    draw(at, "7")
    at.run()  # a rerun without a new stroke (e.g. another widget) is not a new drawing
    assert prediction_div(at)["update"] == "1"
    at.selectbox(key="draw.attr.target").set_value(3).run()
    assert prediction_div(at)["update"] == "1"

    at.session_state["draw_pad"] = canvas_value(None)  # the canvas's Clear
    at.run()
    assert not at.exception
    assert at.session_state["draw_image"] is None
    assert prediction(at) is None
    assert len(at.get("plotly_chart")) == 0
    assert any("Draw a digit" in i.value for i in at.info)

    draw(at, "1")
    assert prediction(at) == "1"
    assert prediction_div(at)["update"] == "2"
    assert at.selectbox(key="draw.attr.target").value == 3  # the class asked about outlives Clear
    assert attribution_caption(at).startswith("**") and " for **3**: " in attribution_caption(at)


def test_fashion_model_says_it_sees_garments(draw_page):
    at = draw_page
    at.selectbox(key="model").set_value("shipped:fashion-classic").run()
    assert [c.value for c in at.caption] == ["Draw a garment:"]
    img = draw(at, "7")
    assert any("garments, not digits" in i.value for i in at.info)
    model = reference("shipped:fashion-classic")
    expected = lenet_core.data.FASHION_CLASSES[int(probs_of(model, img).argmax())]
    assert prediction(at) == expected
    assert at.selectbox(key="draw.attr.target").options == ["the predicted class", *lenet_core.data.FASHION_CLASSES]
    assert f" for **{expected}**: " in attribution_caption(at)
    assert at.selectbox(key="draw.attr.method").options == [METHODS[m][0] for m in methods_for(model)]


def heat(at) -> np.ndarray:
    """The attribution map drawn over the image (the figure's second heatmap)."""
    image, overlay = chart(at, "draw.attr.figure")["data"]
    return array(overlay["z"]).astype(np.float32)


def attribution_caption(at) -> str:
    return next(c.value for c in at.caption if c.value.startswith("**") and " for **" in c.value)


def test_which_pixels_made_it_say_so(draw_page):
    at = draw_page
    img = draw(at, "7")
    model = reference("shipped:digits")
    method = at.selectbox(key="draw.attr.method")
    assert method.options == [METHODS[m][0] for m in methods_for(model)]
    assert method.value == methods_for(model)[0]
    target = at.selectbox(key="draw.attr.target")
    # The first choice follows the prediction under a label that does not change with it (a browser
    # keeps a select's choice by its label); the caption names the class.
    assert target.value == "predicted" and target.options == ["the predicted class", *DIGIT_CLASSES]

    def expect(method_name: str, cls: int):
        assert attribution_caption(at).startswith(f"**{METHODS[method_name][0]}** for **{DIGIT_CLASSES[cls]}**: "
                                                  f"{METHODS[method_name][1]}")
        ref = attribute(model, img, cls, method_name).map
        assert heat(at).shape == (28, 28)
        assert np.allclose(heat(at), ref, rtol=1e-3, atol=1e-6 * float(np.abs(ref).max()))

    expect(methods_for(model)[0], 7)
    target.set_value(3).run()
    assert not at.exception
    expect(methods_for(model)[0], 3)
    at.selectbox(key="draw.attr.method").set_value("gradcam").run()
    assert not at.exception
    expect("gradcam", 3)
    assert at.selectbox(key="draw.attr.method").value == "gradcam"
    assert prediction(at) == "7"  # the class looked at is not the prediction

    at.selectbox(key="draw.attr.target").set_value("predicted").run()
    expect("gradcam", 7)
    img = draw(at, "1")  # a new drawing, a new prediction: the map follows it
    assert prediction(at) == "1"
    expect("gradcam", 1)
    assert at.selectbox(key="draw.attr.target").options[0] == "the predicted class"


def test_a_class_picked_for_one_model_is_dropped_for_another(draw_page):
    at = draw_page
    draw(at, "7")
    at.selectbox(key="draw.attr.target").set_value(3).run()
    assert " for **3**: " in attribution_caption(at)
    at.selectbox(key="model").set_value("shipped:fashion-classic").run()
    assert not at.exception
    assert at.selectbox(key="draw.attr.target").value == "predicted"
    assert f" for **{prediction(at)}**: " in attribution_caption(at)
    at.selectbox(key="model").set_value("shipped:digits").run()
    assert at.selectbox(key="draw.attr.target").value == "predicted"
    assert " for **7**: " in attribution_caption(at)


def test_probe_inputs_each_with_the_models_answer(draw_page):
    at = draw_page
    img = draw(at, "7")
    model = reference("shipped:digits")
    answers = {}
    for md in at.markdown:
        if m := re.fullmatch(r"(.+): \*\*(.+)\*\* \((\d+)%\)", md.value):
            answers[m.group(1)] = (m.group(2), int(m.group(3)))
    assert list(answers) == PROBES
    for what, x in probe_inputs.variants(img):
        p = probs_of(model, x)
        assert answers[what] == (DIGIT_CLASSES[int(p.argmax())], round(100 * float(p.max()))), what
    # The probes are made from the drawing, not fixed pictures.
    variants = dict(probe_inputs.variants(img))
    assert np.allclose(variants["inverted"], 1 - img) and variants["blank"].max() == 0
    assert np.array_equal(variants["shifted 6 px right"][:, 6:], img[:, :-6])


# -- run folders in the shared model picker --------------------------------------------

def make_run(root: Path, name: str, model: LeNet, owner: str | None, dataset="mnist") -> Run:
    config = TrainConfig(model=model.config, dataset=dataset)
    run = Run.create(config, root, name=name, owner=owner)
    run.save_checkpoint(Checkpoint(config, model, dataset, lenet_core.data.DATASETS[dataset][2]))
    return run


@pytest.fixture
def run_folders(no_data, monkeypatch, tmp_path):
    """Under LENET_RUNS_DIR: a run trained from the command line (no owner) that answers 3 to
    everything, two runs of browser A (ReLU, tanh), one of browser B (sigmoid), and a damaged one."""
    root = tmp_path / "runs"
    digits = models.shipped_models()["shipped:digits"]
    three = LeNet(digits.model.config)
    three.load_state_dict(digits.model.state_dict())
    with torch.no_grad():
        three.net.output.bias[3] += 100.0
    torch.manual_seed(0)
    folders = {
        "cli": make_run(root, "always-three", three, None),
        "a": make_run(root, "mine", LeNet(ModelConfig(activation="relu", pooling="max")), owner_of("browser-a")),
        "a2": make_run(root, "mine too", LeNet(ModelConfig(activation="tanh")), owner_of("browser-a")),
        "b": make_run(root, "theirs", LeNet(ModelConfig(activation="sigmoid")), owner_of("browser-b")),
        "broken": make_run(root, "broken", LeNet(ModelConfig()), None),
    }
    (folders["broken"].path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    monkeypatch.setenv("LENET_RUNS_DIR", str(root))
    return folders


def test_run_folders_are_offered_to_their_browser_and_used(run_folders):
    """Runs from the command line (no owner) are offered to every browser, a browser's own runs
    only to it; a folder whose checkpoint is damaged is left out of the choice, and named with why."""
    at = open_draw("browser-a")
    labels = at.selectbox(key="model").options
    assert at.selectbox(key="model").value == "shipped:digits"  # the shipped model stays the default
    assert any(label.startswith("always-three (saved run, MNIST digits") for label in labels), labels
    assert any(label.startswith("mine (your run, MNIST digits") for label in labels), labels
    assert any(label.startswith("mine too (your run, MNIST digits") for label in labels), labels
    assert not any(label.startswith(("theirs", "broken")) for label in labels), labels
    assert not at.error
    assert [w.value.startswith("Not offered, its weights cannot be opened: **broken**") for w in at.warning] == [True]

    at.selectbox(key="model").set_value(f"run:{run_folders['cli'].id}").run()
    draw(at, "7")
    assert prediction(at) == "3"

    # Guided methods are offered for a ReLU network only.
    at.selectbox(key="model").set_value(f"run:{run_folders['a'].id}").run()
    assert not at.exception
    assert at.selectbox(key="draw.attr.method").options == [label for label, _ in METHODS.values()]
    at.selectbox(key="draw.attr.method").set_value("guided_gradcam").run()
    assert attribution_caption(at).startswith("**Guided Grad-CAM** for ")
    # A tanh network has no guided methods: the choice falls back to one it has.
    at.selectbox(key="model").set_value(f"run:{run_folders['a2'].id}").run()
    assert not at.exception
    assert at.selectbox(key="draw.attr.method").options == [METHODS[m][0] for m in METHODS if "guided" not in m]
    assert at.selectbox(key="draw.attr.method").value == "saliency"

    other = open_draw("browser-b")
    labels = other.selectbox(key="model").options
    assert any(label.startswith("always-three (saved run") for label in labels), labels
    assert any(label.startswith("theirs (your run") for label in labels), labels
    assert not any(label.startswith(("mine", "broken")) for label in labels), labels
    other.selectbox(key="model").set_value(f"run:{run_folders['b'].id}").run()
    draw(other, "7")
    methods = other.selectbox(key="draw.attr.method").options
    assert methods == [METHODS[m][0] for m in METHODS if "guided" not in m]
    assert "Guided Backpropagation" not in methods and len(methods) == 4
