"""The Activations page under AppTest (tiny synthetic data sets, run folders of known shapes), and
its figure builders."""
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import lenet_core.data
from charts import array, chart, chart_keys
from lenet_app import maps
from lenet_core.checkpoint import Checkpoint
from lenet_core.data import DATASETS, DIGIT_CLASSES
from lenet_core.model import LeNet, ModelConfig
from lenet_core.probes import load_probes
from lenet_core.runs import Run
from lenet_core.train import TrainConfig
from lenet_core.worker import train_run
from synthetic import synthetic_idx

APP = Path(__file__).resolve().parents[1] / "lenet_lab.py"
ACTIVATIONS = "views/activations.py"
RECORDED_EPOCHS = 3
UNIT = ["act.unit.map", "act.unit.inputs", "act.unit.conv"]  # one value explained, under the maps (conv2)


def saved_run(root: Path, name: str, config: TrainConfig, owner: str | None = None) -> Run:
    """A run folder with random weights and no recording, as the command line leaves one (no owner)."""
    torch.manual_seed(0)
    run = Run.create(config, root, name=name, owner=owner)
    run.save_checkpoint(Checkpoint(config, LeNet(config.model), config.dataset, DATASETS[config.dataset][2]))
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data_dir) -> dict[str, Run]:
    """One runs root for the module: the chapter's LeNet-5 on Fashion-MNIST, three conv layers,
    a small ReLU net trained for real (it records probes.pt), and the same net never trained."""
    root = tmp_path_factory.mktemp("runs")
    small = ModelConfig(activation="relu", pooling="max", conv_channels=(4, 8), dense_widths=(16,))
    folders = {
        "classic": saved_run(root, "classic", TrainConfig()),
        "three": saved_run(root, "three convs", TrainConfig(
            model=ModelConfig(conv_channels=(3, 5, 7), padding="same", activation="tanh"), dataset="mnist")),
        "unrecorded": saved_run(root, "unrecorded", TrainConfig(model=small, dataset="mnist")),
        "recorded": Run.create(TrainConfig(model=small, dataset="mnist", epochs=RECORDED_EPOCHS, batch_size=64), root,
                               name="recorded"),
    }
    assert train_run(folders["recorded"].path, data_dir=tiny_data_dir) == "finished"
    assert (folders["recorded"].path / "probes.pt").is_file()
    assert not (folders["unrecorded"].path / "probes.pt").exists()
    return folders


@pytest.fixture
def runs_root(runs, monkeypatch):
    monkeypatch.setenv("LENET_RUNS_DIR", str(runs["classic"].path.parent))
    return runs


@pytest.fixture
def with_data(offline, monkeypatch, runs_root):
    for folder in ("mnist", "fashion-mnist"):
        synthetic_idx(offline / "data" / folder, n_train=64, n_test=200)
    monkeypatch.setenv("LENET_DATA_DIR", str(offline / "data"))
    return runs_root


@pytest.fixture
def without_data(offline, monkeypatch, runs_root):
    (offline / "data").mkdir()
    monkeypatch.setenv("LENET_DATA_DIR", str(offline / "data"))
    return runs_root


def open_page(session_state=None, model: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    for k, v in (session_state or {}).items():
        at.session_state[k] = v
    at.switch_page(ACTIVATIONS).run()
    assert not at.exception, at.exception
    if model is not None:
        at.selectbox(key="model").set_value(model).run()
        assert not at.exception, at.exception
    return at


def headings(at):
    return [h.value for h in at.subheader]


def conv_headings(at):
    return [h for h in headings(at) if h.startswith("conv")]


def captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


def test_test_image_then_every_stage_and_scale(with_data):
    at = open_page(model=f"run:{with_data['classic'].id}")
    assert at.segmented_control(key="act_view").value == "One input"
    assert at.selectbox(key="act_a_source").value == "Test image"
    assert at.selectbox(key="act_a_class").value == "Pullover"
    assert conv_headings(at) == ["conv1: 6 maps of 28x28 (post-activation)",
                                 "conv2: 16 maps of 10x10 (post-activation)"]
    assert chart_keys(at) == ["act.attr.figure", "act_conv1", "act_conv2", *UNIT]
    assert "Filters: red = positive weight" in captions(at)
    assert [h["name"] for h in chart(at, "act_conv1")["data"] if h["type"] == "heatmap"] == ["maps", "filters"]

    at.radio(key="act_stage").set_value("pre-activation").run()
    at.radio(key="act_scale").set_value("One per map").run()
    assert not at.exception
    assert "red = positive, blue = negative" in captions(at)  # pre-activations diverge around 0
    assert "each map has its own colour range" in captions(at)
    assert conv_headings(at)[0] == "conv1: 6 maps of 28x28 (pre-activation)"
    at.radio(key="act_stage").set_value("pooled").run()
    assert conv_headings(at) == ["conv1: 6 maps of 14x14 (pooled)", "conv2: 16 maps of 5x5 (pooled)"]

    at.toggle(key="act_kernels2").set_value(True).run()
    assert not at.exception and chart_keys(at)[-4] == "act_kernel_tiles2"
    z = array(chart(at, "act_kernel_tiles2")["data"][0]["z"]).astype(float)
    assert z.shape == (16 * 6 - 1, 6 * 6 - 1)  # every kernel of conv2: 16 filters x 6 input channels

    at.toggle(key="act_filters").set_value(False).run()  # the Display popover's third control
    assert not at.exception
    assert "Filters: red" not in captions(at) and not any(t.key == "act_kernels2" for t in at.toggle)
    assert [h["name"] for h in chart(at, "act_conv1")["data"] if h["type"] == "heatmap"] == ["maps"]


def test_random_average_and_drawing_inputs(with_data):
    drawn = np.zeros((28, 28), np.float32)
    drawn[4:24, 13:16] = 1.0
    at = open_page({"draw_image": drawn}, model=f"run:{with_data['classic'].id}")
    at.selectbox(key="act_a_source").set_value("Random test image").run()
    assert "test image #" in captions(at) and chart_keys(at) == ["act.attr.figure", "act_conv1", "act_conv2", *UNIT]
    at.button(key="act_a_reroll").click().run()
    assert not at.exception
    at.selectbox(key="act_a_source").set_value("Average of N test images").run()
    assert "the mean of the first " in captions(at) and chart_keys(at) == ["act_conv1", "act_conv2"]
    assert "model right on" in captions(at)  # several images: no attribution map of one
    at.selectbox(key="act_a_source").set_value("Current drawing").run()
    assert "your drawing" in captions(at) and len(at.get("plotly_chart")) == 3 + len(UNIT)


def test_compare_pullover_and_coat(with_data):
    at = open_page(model=f"run:{with_data['classic'].id}")
    at.segmented_control(key="act_view").set_value("Compare two inputs").run()
    assert not at.exception
    assert at.selectbox(key="act_a_class").value == "Pullover"
    assert at.selectbox(key="act_b_class").value == "Coat"
    assert headings(at)[:2] == ["Input A", "Input B"]
    assert chart_keys(at) == ["act_cmp1_a", "act_cmp1_b", "act_cmp1_diff", "act_cmp2_a", "act_cmp2_b", "act_cmp2_diff"]
    assert "Difference" in captions(at)
    a, b, diff = (array(chart(at, key)["data"][0]["z"]).astype(float)
                  for key in ("act_cmp1_a", "act_cmp1_b", "act_cmp1_diff"))
    assert np.allclose(diff, a - b, equal_nan=True)  # the third grid is A minus B, map by map
    at.selectbox(key="act_b_source").set_value("Average of N test images").run()
    assert not at.exception and len(at.get("plotly_chart")) == 6


def test_without_data_test_images_explain_and_drawing_still_works(without_data):
    at = open_page(model=f"run:{without_data['classic'].id}")
    assert at.selectbox(key="act_a_source").value == "Test image"
    assert any("Test images need the data set" in w.value and "LENET_DATA_DIR" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) == 0
    drawn = np.zeros((28, 28), np.float32)
    drawn[10:18, 6:22] = 1.0
    at = open_page({"draw_image": drawn}, model=f"run:{without_data['classic'].id}")
    assert at.selectbox(key="act_a_source").value == "Current drawing"
    assert len(at.get("plotly_chart")) == 3 + len(UNIT)


@pytest.mark.parametrize("saliency", [True, False])
def test_evaluate_request_opens_that_test_image(with_data, saliency):
    data = lenet_core.data.load_dataset("mnist", download=False)
    index = 37
    label = int(data.test_labels[index])
    request = {"model_key": "shipped:digits", "dataset": "mnist", "index": index, "saliency": saliency}
    at = open_page({"act_view": "Compare two inputs", "activations_request": request})
    assert at.selectbox(key="model").value == "shipped:digits"
    assert at.segmented_control(key="act_view").value == "One input"
    assert at.selectbox(key="act_a_class").value == DIGIT_CLASSES[label]
    assert f"test image #{index}," in captions(at)
    (expander,) = at.expander
    assert expander.label == "Which pixels made it say that" and expander.proto.expanded is saliency
    assert "act.attr.figure" in chart_keys(at)
    assert "activations_request" not in at.session_state  # honoured once, then cleared
    at.run()
    assert f"test image #{index}," in captions(at)


def test_evaluate_request_for_a_model_that_has_gone(with_data):
    request = {"model_key": "run:deleted-meanwhile", "dataset": "mnist", "index": 3, "saliency": True}
    at = open_page({"activations_request": request})
    assert any("no longer available" in w.value for w in at.warning)
    assert at.selectbox(key="model").value == "shipped:digits"


def test_any_number_of_conv_layers(with_data):
    at = open_page(model=f"run:{with_data['three'].id}")
    assert [h.split(":")[0] for h in conv_headings(at)] == ["conv1", "conv2", "conv3"]
    assert chart_keys(at) == ["act.attr.figure", "act_conv1", "act_conv2", "act_conv3", *UNIT]
    at.segmented_control(key="act_view").set_value("Compare two inputs").run()
    assert not at.exception and len(at.get("plotly_chart")) == 9
    assert at.selectbox(key="act_a_class").value == "4" and at.selectbox(key="act_b_class").value == "9"


# -- epoch by epoch -------------------------------------------------------------------

def test_epoch_by_epoch_replays_a_recorded_run(with_data):
    run = with_data["recorded"]
    probes = load_probes(run.path / "probes.pt")
    assert probes["epochs"] == list(range(RECORDED_EPOCHS + 1))  # before training, then each epoch's end
    at = open_page(model=f"run:{run.id}")
    at.segmented_control(key="act_view").set_value("Epoch by epoch").run()
    assert not at.exception

    (slider,) = at.select_slider
    assert slider.label == "Epoch" and slider.options == [str(e) for e in probes["epochs"]]
    assert slider.value == RECORDED_EPOCHS  # the latest first
    labels = probes["labels"].tolist()
    image = at.selectbox(key="act.scrub.image")
    assert image.options == [f"{i + 1}: {DIGIT_CLASSES[y]}" for i, y in enumerate(labels)]
    assert chart_keys(at) == ["act.scrub.conv1", "act.scrub.conv2"]
    assert [m.value for m in at.markdown if m.value.startswith("**conv")] == [
        "**conv1**: 4 maps of 28x28", "**conv2**: 8 maps of 10x10"]
    assert f"Epoch {RECORDED_EPOCHS} of the {RECORDED_EPOCHS + 1} recorded" in captions(at)

    def drawn(layer: str, channel: int) -> np.ndarray:
        maps_trace = chart(at, f"act.scrub.{layer}")["data"][0]
        z = array(maps_trace["z"]).astype(float)
        which = array(maps_trace["customdata"]).astype(float)[..., 0]
        side = probes[layer].shape[-1]
        return z[which == channel + 1].reshape(side, side)

    # What is drawn is the recording's map of that epoch and probe image.
    last = drawn("conv1", 0)
    assert np.allclose(last, probes["conv1"][RECORDED_EPOCHS, 0, 0].float().numpy())
    slider.set_value(1).run()
    assert not at.exception
    assert f"Epoch 1 of the {RECORDED_EPOCHS + 1} recorded" in captions(at)
    assert np.allclose(drawn("conv1", 0), probes["conv1"][1, 0, 0].float().numpy())
    assert not np.allclose(drawn("conv1", 0), last)  # training changed the filters
    image.set_value(5).run()
    assert np.allclose(drawn("conv2", 3), probes["conv2"][1, 5, 3].float().numpy())


def test_a_run_without_a_recording_says_so(with_data):
    run = with_data["unrecorded"]
    at = open_page(model=f"run:{run.id}")
    at.segmented_control(key="act_view").set_value("Epoch by epoch").run()
    assert not at.exception
    assert any("**unrecorded** has no epoch-by-epoch recording" in i.value for i in at.info)
    assert not at.select_slider and len(at.get("plotly_chart")) == 0


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
