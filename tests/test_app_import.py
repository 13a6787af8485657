"""The Train page's upload takes a plain state dict: it shows the architecture it read and the check
of what the weights cannot say, and adds the model only when asked; anything else is one message."""
import io
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from lenet_app import server
from lenet_core.data import load_dataset
from lenet_core.runs import Run, list_runs
from test_imports import ChapterLeNet, train_small

APP = Path(__file__).resolve().parents[1] / "lenet_lab.py"


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_data_dir):
    mp = pytest.MonkeyPatch()
    mp.setenv("LENET_DATA_DIR", str(tiny_data_dir))
    mp.setenv("LENET_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield
    server.stop_executor()
    mp.undo()


@pytest.fixture
def runs_root(env, tmp_path, monkeypatch):
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


def state_dict_bytes(model) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def train_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["lenet_session_token"] = "browser-a"
    at.run()
    at.switch_page("views/train.py").run()
    assert not at.exception, at.exception
    return at


def uploaded(at: AppTest, data: bytes, filename: str) -> AppTest:
    """What the uploader's callback does with a file, as AppTest cannot drop one on the widget:
    accept() runs here, and the page's session gets what it held and said."""
    import streamlit as st

    from lenet_app import uploads

    at.session_state["train.upload_result"] = uploads.accept(data, filename)
    if uploads.PENDING in st.session_state:
        at.session_state[uploads.PENDING] = st.session_state.pop(uploads.PENDING)
    return at.run()


def text_of(at) -> str:
    shown = [m.value for kind in ("markdown", "info", "warning", "success", "error") for m in getattr(at, kind)]
    return "\n".join(shown).replace("\\", "")  # as read: without Markdown's escapes


def test_a_state_dict_is_shown_checked_and_added_when_asked(runs_root, tiny_data_dir):
    torch.set_num_threads(1)
    net = train_small("relu", "max", load_dataset("mnist", tiny_data_dir))
    at = train_page()
    at = uploaded(at, state_dict_bytes(net), "lenet.params")
    assert not at.exception, at.exception
    shown = text_of(at)
    assert "the chapter's layout" in shown and "net.0: conv 1→4 channels, 5×5, padded 2" in shown
    assert "net.11: dense 16→10, the output" in shown
    at.selectbox(key="train.import.dataset").select("mnist").run()
    shown = text_of(at)
    assert "relu + max pooling, [0, 1] input ← taken" in shown and "Check** on 64 test images" in shown
    assert list_runs(runs_root) == []  # nothing is kept before Add
    next(b for b in at.button if b.label == "Add to my runs").click().run()
    assert not at.exception, at.exception
    (info,) = list_runs(runs_root)
    assert info.name == "lenet.params (imported)" and info.owner is not None and info.status == "finished"
    assert info.config.model.activation == "relu" and info.config.model.pooling == "max"
    assert info.origin["imported"] == "lenet.params" and info.config.dataset == "mnist"
    assert "Added **lenet.params** as relu + max pooling" in text_of(at)
    assert not [b for b in at.button if b.label == "Add to my runs"]  # the panel is gone
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert (Run(info.path).load_checkpoint().model(x) - net(x)).abs().max() <= 1e-6


def test_a_choice_given_is_not_tried_and_cancel_keeps_nothing(runs_root):
    at = uploaded(train_page(), state_dict_bytes(ChapterLeNet()), "mine.pt")
    at.selectbox(key="train.import.activation").select("sigmoid").run()
    at.selectbox(key="train.import.pooling").select("avg").run()
    at.selectbox(key="train.import.scaling").select("unit").run()
    shown = text_of(at)
    assert "sigmoid + average pooling, [0, 1] input ← taken" in shown
    assert "relu" not in shown.split("Check**")[1]  # only the combination given was tried
    next(b for b in at.button if b.label == "Cancel").click().run()
    assert not [b for b in at.button if b.label == "Add to my runs"] and list_runs(runs_root) == []


def test_a_network_lenet_lab_cannot_express_is_one_message(runs_root):
    model = ChapterLeNet()
    model.net[0] = torch.nn.Conv2d(3, 6, 5, padding=2)
    at = uploaded(train_page(), state_dict_bytes(model), "cifar.pt")
    assert not at.exception
    (error,) = at.error
    assert "cifar.pt** was not loaded" in text_of(at) and "takes 3-channel images" in text_of(at)
    assert not [b for b in at.button if b.label == "Add to my runs"] and list_runs(runs_root) == []
