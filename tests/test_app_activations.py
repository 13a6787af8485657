"""The Activations page under AppTest (tiny synthetic data sets), and its figure builders."""
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import lenet_core.data
from lenet_app import maps, state
from lenet_core.checkpoint import Checkpoint
from lenet_core.data import DIGIT_CLASSES
from synthetic import synthetic_idx
from lenet_core.model import LeNet, ModelConfig
from lenet_core.train import TrainConfig

APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture
def with_data(offline, monkeypatch):
    for folder in ("mnist", "fashion-mnist"):
        synthetic_idx(offline / "data" / folder, n_train=64, n_test=200)
    monkeypatch.setenv("LENET_DATA_DIR", str(offline / "data"))


@pytest.fixture
def without_data(offline, monkeypatch):
    (offline / "data").mkdir()
    monkeypatch.setenv("LENET_DATA_DIR", str(offline / "data"))


def open_page(session_state=None):
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.run()
    for k, v in (session_state or {}).items():
        at.session_state[k] = v
    at.switch_page("pages/activations.py").run()
    assert not at.exception, at.exception
    return at


def headings(at):
    return [h.value for h in at.subheader]


def charts(at):
    return at.get("plotly_chart")


def test_test_image_then_every_stage_and_scale(with_data):
    at = open_page()
    assert at.selectbox(key="act_model").value == "shipped:fashion-classic"
    assert at.selectbox(key="act_a_class").value == "Pullover"
    assert any(h.startswith("conv1: 6 maps of 28x28") for h in headings(at))
    assert any(h.startswith("conv2: 16 maps of 10x10") for h in headings(at))
    assert len(charts(at)) == 2
    at.radio(key="act_stage").set_value("pre-activation").run()
    at.radio(key="act_scale").set_value("One per map").run()
    assert not at.exception
    assert any("red = positive" in c.value for c in at.caption)  # pre-activations diverge around 0
    at.radio(key="act_stage").set_value("pooled").run()
    assert any(h.startswith("conv1: 6 maps of 14x14") for h in headings(at))
    at.toggle(key="act_kernels2").set_value(True).run()
    assert not at.exception and len(charts(at)) == 3


def test_random_average_and_drawing_inputs(with_data):
    drawn = np.zeros((28, 28), np.float32)
    drawn[4:24, 13:16] = 1.0
    at = open_page({"draw_image": drawn})
    at.radio(key="act_a_source").set_value("Random test image").run()
    assert any("test image #" in c.value for c in at.caption) and len(charts(at)) == 2
    at.button(key="act_a_reroll").click().run()
    assert not at.exception
    at.radio(key="act_a_source").set_value("Average of N test images").run()
    assert any("the mean of the first" in c.value for c in at.caption) and len(charts(at)) == 2
    at.radio(key="act_a_source").set_value("Current drawing").run()
    assert any("your drawing" in c.value for c in at.caption) and len(charts(at)) == 2


def test_compare_pullover_and_coat(with_data):
    at = open_page()
    at.radio(key="act_view").set_value("Compare two inputs").run()
    assert not at.exception
    assert at.selectbox(key="act_a_class").value == "Pullover"
    assert at.selectbox(key="act_b_class").value == "Coat"
    assert len(charts(at)) == 6  # A, B and A - B for each of the two conv layers
    assert any("Difference" in c.value for c in at.caption)
    at.radio(key="act_b_source").set_value("Average of N test images").run()
    assert not at.exception and len(charts(at)) == 6


def test_without_data_test_images_explain_and_drawing_still_works(without_data):
    at = open_page()
    assert at.radio(key="act_a_source").value == "Test image"
    assert any("not available" in w.value and "LENET_DATA_DIR" in w.value for w in at.warning)
    assert len(charts(at)) == 0
    drawn = np.zeros((28, 28), np.float32)
    drawn[10:18, 6:22] = 1.0
    at = open_page({"draw_image": drawn})
    assert at.radio(key="act_a_source").value == "Current drawing"
    assert len(charts(at)) == 2


def test_evaluate_request_opens_that_test_image(with_data):
    data = lenet_core.data.load_dataset("mnist", download=False)
    index = 37
    label = int(data.test_labels[index])
    at = open_page({"activations_request": {"model_key": "shipped:digits", "dataset": "mnist", "index": index}})
    assert at.selectbox(key="act_model").value == "shipped:digits"
    assert at.selectbox(key="act_a_class").value == DIGIT_CLASSES[label]
    assert any(f"test image #{index}," in c.value for c in at.caption)
    assert "activations_request" not in at.session_state  # honoured once, then cleared
    at.run()
    assert any(f"test image #{index}," in c.value for c in at.caption)


def test_any_number_of_conv_layers(with_data):
    config = TrainConfig(model=ModelConfig(conv_channels=(3, 5, 7), padding="same", activation="tanh"),
                         dataset="mnist")
    ckpt = Checkpoint(config, LeNet(config.model), "mnist", DIGIT_CLASSES)
    run = state.SessionRun(99, "three convs", config, None, ckpt)
    at = open_page({"lenet_runs": {99: run}})
    at.selectbox(key="act_model").set_value("run:99").run()
    assert not at.exception
    assert [h.split(":")[0] for h in headings(at) if h.startswith("conv")] == ["conv1", "conv2", "conv3"]
    assert len(charts(at)) == 3


# -- figure builders --------------------------------------------------------------

def test_map_grid_tiles_every_map_unchanged():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(16, 10, 10)).astype(np.float32)
    f = rng.normal(size=(16, 5, 5)).astype(np.float32)
    fig = maps.map_grid(m, filters=f, diverging=True)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert [t.name for t in heat] == ["maps", "filters"]  # one trace each, however many channels
    z, which = np.asarray(heat[0].z, float), np.asarray(heat[0].customdata, float)[..., 0]
    for i in (0, 7, 8, 15):  # every map is in the tiles, pixel for pixel
        assert np.array_equal(z[which == i + 1].reshape(10, 10), m[i])
    assert np.isnan(z).any() and np.isnan(which[np.isnan(z)]).all()
    x = np.asarray(heat[0].x, float)
    assert np.allclose(np.diff(x[:10]), 1.0) and np.all(np.diff(x) > 0)  # square pixels, gaps between
    ca = fig.layout.coloraxis
    assert ca.cmin == -ca.cmax == -float(np.abs(m).max())  # diverging: centred at 0


def test_map_grid_per_map_scales_each_map_but_hovers_raw_values():
    m = np.stack([np.full((4, 4), 0.1), np.linspace(0, 5, 16).reshape(4, 4)]).astype(np.float32)
    fig = maps.map_grid(m, per_map=True)
    z = np.asarray(fig.data[0].z, float)
    raw = np.asarray(fig.data[0].customdata, float)[..., 1]
    assert np.nanmax(z) == 1.0 and np.nanmin(z) == 0.0
    assert np.nanmax(raw) == 5.0
    assert fig.layout.coloraxis.showscale is False


def test_probability_bars_highlight_the_best_class():
    fig = maps.probability_bars(np.array([0.1, 0.7, 0.2]), ("a", "b", "c"))
    colours = fig.data[0].marker.color
    assert colours[1] == maps.HIGHLIGHT and colours[0] == colours[2] == maps.MUTED


def test_kernel_tiles_is_one_heatmap_with_gaps():
    w = np.ones((16, 6, 5, 5), np.float32)
    fig = maps.kernel_tiles(w)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert len(fig.data) == 1 and z.shape == (16 * 6 - 1, 6 * 6 - 1)
    assert np.isnan(z[5]).all() and np.nansum(z) == 16 * 6 * 25
