"""The Draw page under AppTest: a drawing arrives as the canvas's PNG data URL in session state."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

import lenet_core.data
from lenet_core.activations import predict_proba
from lenet_core.checkpoint import load_checkpoint, save_run
from lenet_core.preprocess import digit_from_rgba, image_to_tensor, rgba_to_png_data_url

APP = Path(__file__).resolve().parents[1] / "app.py"
DIGITS = Path(__file__).resolve().parents[1] / "models" / "digits" / "checkpoint.pt"
STROKES = {"7": [(80, 50), (200, 50), (120, 240)], "1": [(140, 40), (140, 240)]}


def drawing(digit: str) -> np.ndarray:
    """A 280x280 canvas like streamlit-drawable-canvas sends: white strokes on black."""
    img = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    ImageDraw.Draw(img).line(STROKES[digit], fill=(255, 255, 255, 255), width=18, joint="curve")
    return np.asarray(img)


def canvas_value(rgba: np.ndarray | None) -> dict:
    """The component's state as streamlit-drawable-canvas 0.13 keeps it under its key."""
    return {"drawing": {"raw": {"objects": []}, "data": None if rgba is None else rgba_to_png_data_url(rgba)},
            "backgroundFit": None}


@pytest.fixture
def no_data(offline, monkeypatch):
    """No data set anywhere, and no download: the Draw page must not need one."""
    (offline / "data").mkdir()
    monkeypatch.setenv("LENET_DATA_DIR", str(offline / "data"))


@pytest.fixture
def draw_page(no_data):
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.run()
    at.switch_page("pages/draw.py").run()
    assert not at.exception
    return at


def prediction(at) -> str | None:
    for md in at.markdown:
        if 'class="draw-prediction"' in md.value:
            return md.value.split(">", 1)[1].rsplit("</div>", 1)[0]
    return None


def timing(at) -> str:
    return next(c.value for c in at.caption if "computed in" in c.value)


def test_blank_canvas_asks_for_a_drawing(draw_page):
    at = draw_page
    assert at.title[0].value == "Draw"
    assert any("Draw a digit" in i.value for i in at.info)
    assert prediction(at) is None
    assert len(at.get("plotly_chart")) == 0
    assert at.session_state["draw_image"] is None
    assert timing(at).startswith("Update 0 · computed in")


@pytest.mark.parametrize("digit", ["7", "1"])
def test_drawing_gives_the_models_prediction(draw_page, digit):
    at = draw_page
    rgba = drawing(digit)
    at.session_state["draw_canvas"] = canvas_value(rgba)
    at.run()
    assert not at.exception

    # The reference: the same preprocessing and model, outside the app.
    model = load_checkpoint(DIGITS).model
    expected = int(predict_proba(model, image_to_tensor(digit_from_rgba(rgba)))[0].argmax())
    assert prediction(at) == str(expected)
    assert expected == int(digit)  # a clean drawing of a digit: a digit model must get it
    assert len(at.get("plotly_chart")) == 3  # probability bars, conv1 maps, conv2 maps
    img = at.session_state["draw_image"]
    assert img.shape == (28, 28) and img.dtype == np.float32
    assert timing(at).startswith("Update 1 · computed in")


def test_same_drawing_twice_counts_once_and_clear_empties(draw_page):
    at = draw_page
    at.session_state["draw_canvas"] = canvas_value(drawing("7"))
    at.run()
    at.run()  # a rerun without a new stroke (e.g. another widget) is not a new drawing
    assert timing(at).startswith("Update 1 ")
    at.button[0].click().run()
    assert not at.exception
    assert at.session_state["draw_image"] is None
    assert prediction(at) is None
    assert any("Draw a digit" in i.value for i in at.info)


def test_fashion_model_says_it_sees_garments(draw_page):
    at = draw_page
    at.selectbox(key="draw_model").set_value("shipped:fashion-classic").run()
    at.session_state["draw_canvas"] = canvas_value(drawing("7"))
    at.run()
    assert not at.exception
    assert any("garments, not digits" in i.value for i in at.info)
    assert prediction(at) in lenet_core.data.FASHION_CLASSES


def test_a_saved_run_folder_is_offered_and_used(no_data, monkeypatch, tmp_path):
    """Run folders under LENET_RUNS_DIR (e.g. from `python -m lenet_core train --out runs/NAME`)
    appear in the model picker; a folder whose checkpoint is damaged is left out, silently."""
    runs = tmp_path / "runs"
    ckpt = load_checkpoint(DIGITS)
    with torch.no_grad():
        ckpt.model.net.output.bias[3] += 100.0  # this run answers 3 to everything
    save_run(runs / "always-three", ckpt)
    save_run(runs / "broken", load_checkpoint(DIGITS))
    (runs / "broken" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    monkeypatch.setenv("LENET_RUNS_DIR", str(runs))

    at = AppTest.from_file(str(APP), default_timeout=30)
    at.run()
    at.switch_page("pages/draw.py").run()
    picker = at.selectbox(key="draw_model")
    assert [o for o in picker.options if o.startswith("always-three (saved run, MNIST digits")], picker.options
    assert not any("broken" in label for label in picker.options), picker.options
    assert picker.value == "shipped:digits"  # the shipped model stays the default

    picker.set_value(f"saved:{(runs / 'always-three').resolve()}").run()
    at.session_state["draw_canvas"] = canvas_value(drawing("7"))
    at.run()
    assert not at.exception
    assert prediction(at) == "3"
