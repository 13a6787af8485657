"""Activations' "one value, explained" under AppTest: every kind of layer explained without an
error, with the model's own numbers (the click itself is tested in Chromium, test_browser_live)."""
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from lenet_app.models import MODELS_DIR
from lenet_core.checkpoint import load_checkpoint
from lenet_core.data import load_dataset
from lenet_core.explain import explain
from lenet_core.train import as_input
from synthetic import synthetic_idx

APP = Path(__file__).resolve().parents[1] / "lenet_lab.py"


@pytest.fixture
def data(offline, monkeypatch):
    synthetic_idx(offline / "data" / "mnist", n_train=64, n_test=100)
    monkeypatch.setenv("LENET_DATA_DIR", str(offline / "data"))
    return load_dataset("mnist", offline / "data", download=False)


def test_each_kind_of_layer_is_explained_with_the_models_numbers(data):
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page("views/activations.py").run()
    assert not at.exception, at.exception
    idx = int(np.flatnonzero(data.test_labels.numpy() == 4)[0])  # the page opens on the first "4"
    model = load_checkpoint(MODELS_DIR / "digits" / "checkpoint.pt").model.eval()
    x = as_input(data.test_images[idx:idx + 1])
    text = lambda: "\n".join(m.value for m in at.markdown)
    assert at.selectbox(key="act.unit.layer").value == "conv2"
    at_max = at.session_state["act.unit.at"]  # before a click: the map's largest value
    e = explain(model, x, "conv2", 0, at_max)
    assert f"**{e['value']:.4f}** (the map's value)" in text() and f"{e['bias']:.4f}" in text()
    for layer, unit, said in (("conv1_pool", 2, "of a 2×2 window"), ("fc1", 5, "largest contributions"),
                              ("output", 4, "largest contributions"), ("conv1", 5, "reads a 5×5 window")):
        at.selectbox(key="act.unit.layer").set_value(layer).run()
        at.number_input(key="act.unit.unit").set_value(unit).run()
        assert not at.exception, (layer, at.exception)
        e = explain(model, x, layer, unit, at.session_state["act.unit.at"] if layer.startswith("conv") else None)
        assert said in text() and f"{e['value']:.4f}" in text(), layer
