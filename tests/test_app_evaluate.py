"""The Evaluate page (AppTest) and the helpers behind it (lenet_app/eval_view.py)."""
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

import lenet_core.data as data_module
from lenet_app import eval_view, state
from lenet_app.state import SessionRun, shipped_models
from lenet_core import Checkpoint, LeNet, TrainConfig, evaluate, load_dataset
from lenet_core.data import DIGIT_CLASSES
from synthetic import synthetic_idx

APP = Path(__file__).resolve().parents[1] / "app.py"
EVALUATE = "pages/evaluate.py"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """Tiny synthetic copies of both data sets, no download, and empty server caches."""
    for folder in ("mnist", "fashion-mnist"):
        synthetic_idx(tmp_path / "data" / folder, n_train=64, n_test=200)
    monkeypatch.setenv("LENET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LENET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(data_module, "SYSTEM_DIRS", {})
    monkeypatch.setattr(data_module, "_download", _no_network)
    st.cache_resource.clear()
    yield tmp_path / "data"
    st.cache_resource.clear()


def _no_network(name):
    raise OSError("network is unreachable (test)")


def open_evaluate(**state) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(EVALUATE).run()
    assert not at.exception, at.exception
    return at


def gallery_buttons(at):
    return [b for b in at.button if (b.key or "").startswith("evaluate_open_")]


def reference(model, name):
    data = load_dataset(name)
    return data, evaluate(model, data.test_images, data.test_labels)


# -- the helpers ---------------------------------------------------------------------------

def test_run_evaluation_matches_lenet_core_evaluate(data_dir):
    entry = shipped_models()["shipped:digits"]
    data, ref = reference(entry.model, "mnist")
    ev = eval_view.run_evaluation(entry.model, data.test_images, data.test_labels, data.classes, "mnist",
                                  batch_size=64)  # several batches
    assert ev.count == ref["count"] == 200
    assert ev.confusion.tolist() == ref["confusion"]
    assert ev.accuracy == pytest.approx(ref["accuracy"])
    assert ev.loss == pytest.approx(ref["loss"], rel=1e-4)
    assert ev.per_class_accuracy.tolist() == pytest.approx(ref["per_class_accuracy"])
    probs = torch.softmax(entry.model(data.test_images[:5].unsqueeze(1).float() / 255), 1)
    assert ev.predictions[:5].tolist() == probs.argmax(1).tolist()
    assert ev.confidence[:5] == pytest.approx(probs.max(1).values.detach().numpy(), abs=1e-5)
    assert set(ev.mistakes.tolist()) == set(np.flatnonzero(ev.predictions != ev.labels).tolist())


def _toy_evaluation():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    preds = np.array([0, 1, 1, 0, 1, 1, 2, 2])
    conf = np.array([.9, .6, .8, .95, .7, .99, .5, .3], dtype=np.float32)
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (labels, preds), 1)
    return eval_view.Evaluation("toy", ("a", "b", "c"), 0.5, confusion, labels, preds, conf, 0.0)


def test_select_mistakes_filters_orders_and_shuffles():
    ev = _toy_evaluation()
    assert ev.mistakes.tolist() == [1, 3, 4, 5, 7]
    shown, total = eval_view.select_mistakes(ev)
    assert total == 5 and shown.tolist() == [5, 3, 4, 1, 7]  # surest mistakes first
    assert eval_view.select_mistakes(ev, true_class=2)[0].tolist() == [5, 4]
    assert eval_view.select_mistakes(ev, predicted=1)[0].tolist() == [5, 4, 1]
    assert eval_view.select_mistakes(ev, true_class=2, predicted=1, limit=1) == (pytest.approx([5]), 2)
    assert eval_view.select_mistakes(ev, true_class=1, predicted=2)[1] == 0
    orders = {tuple(eval_view.select_mistakes(ev, order="random", seed=s)[0]) for s in range(6)}
    assert len(orders) > 1 and all(sorted(o) == [1, 3, 4, 5, 7] for o in orders)
    assert eval_view.top_confusions(ev, k=2) == [(2, 1, 2), (0, 1, 1)]


def test_figures_show_counts_and_class_names():
    ev = _toy_evaluation()
    heat = eval_view.confusion_figure(ev).data[0]
    assert list(heat.x) == list(heat.y) == ["a", "b", "c"]
    assert heat.text.tolist() == [["1", "1", "1"], ["1", "1", ""], ["", "2", "1"]]  # zeros left blank
    assert heat.z[2][1] == pytest.approx(np.sqrt(2 / 3))
    bars = eval_view.per_class_figure(ev).data[0]
    assert list(bars.y) == ["a", "b", "c"] and list(bars.x) == pytest.approx([1 / 3, 1 / 2, 1 / 3])
    thumb = eval_view.thumbnail(torch.arange(28 * 28).reshape(28, 28) % 256)
    assert thumb.size == (112, 112) and thumb.getpixel((3, 0)) == 0 and thumb.getpixel((4, 0)) == 1


def test_missing_data_markdown_makes_paths_and_commands_copyable(data_dir, monkeypatch):
    monkeypatch.setenv("LENET_DATA_DIR", str(data_dir.parent / "empty_dir"))
    with pytest.raises(data_module.DataUnavailableError) as err:
        load_dataset("mnist")
    md = state.missing_data_markdown(str(err.value))
    assert f"- `{data_dir.parent / 'empty_dir' / 'mnist'}`" in md
    assert "`LENET_DATA_DIR=DIR`" in md and "`DIR/mnist/`" in md and "`--data-dir DIR`" in md


# -- the page ------------------------------------------------------------------------------

def test_evaluate_page_shows_accuracy_figures_and_gallery(data_dir):
    at = open_evaluate()
    entry = shipped_models()["shipped:digits"]  # the picker's first model
    data, ref = reference(entry.model, "mnist")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"] == f"{ref['accuracy']:.1%}"
    mistakes = ref["count"] - sum(np.diag(ref["confusion"]))
    assert metrics["Mistakes"] == f"{mistakes:,} of {ref['count']:,}"
    assert len(at.get("plotly_chart")) == 2
    assert [s.value for s in at.subheader][:3] == ["Confusion matrix", "Accuracy per class", "Mistakes"]
    buttons = gallery_buttons(at)
    assert len(buttons) == min(eval_view.GALLERY_SIZE, mistakes) > 0
    assert all(b.label == "Open in Activations" for b in buttons)


def test_gallery_filters_by_true_and_predicted_class(data_dir):
    at = open_evaluate()
    ev = eval_view.evaluation_for(shipped_models()["shipped:digits"], load_dataset("mnist"))
    true_class, predicted, _ = eval_view.top_confusions(ev, 1)[0]
    at.selectbox(key="evaluate_true").set_value(true_class).run()
    at.selectbox(key="evaluate_pred").set_value(predicted).run()
    assert not at.exception
    expected = [i for i in ev.mistakes if ev.labels[i] == true_class and ev.predictions[i] == predicted]
    shown = sorted(int(b.key.removeprefix("evaluate_open_")) for b in gallery_buttons(at))
    assert shown == sorted(expected)[:eval_view.GALLERY_SIZE] or len(expected) > eval_view.GALLERY_SIZE
    assert all(i in expected for i in shown)


def test_shuffle_shows_another_random_sample(data_dir):
    at = open_evaluate()
    shuffle = next(b for b in at.button if b.label == "Shuffle")
    assert shuffle.disabled  # only random order has anything to shuffle
    at.segmented_control(key="evaluate_order").set_value("random").run()
    samples = {tuple(b.key for b in gallery_buttons(at))}
    for _ in range(2):
        next(b for b in at.button if b.label == "Shuffle").click().run()
        samples.add(tuple(b.key for b in gallery_buttons(at)))
    assert not at.exception
    assert len(samples) == 3  # 200 synthetic images: far more than 24 mistakes to sample from


def test_open_in_activations_sends_the_request_and_switches_page(data_dir, monkeypatch):
    sent = []
    real_switch = st.switch_page

    def spy(page):  # the request as it stands when Evaluate hands over (Activations pops it)
        sent.append((page, dict(st.session_state["activations_request"])))
        real_switch(page)

    monkeypatch.setattr(st, "switch_page", spy)
    at = open_evaluate()
    button = gallery_buttons(at)[0]
    index = int(button.key.removeprefix("evaluate_open_"))
    button.click().run()
    assert not at.exception
    assert sent == [("pages/activations.py", {"model_key": "shipped:digits", "dataset": "mnist", "index": index})]
    # The run finished on the Activations page (AppTest keeps no public record of the page),
    # which took the request and picked the model it names.
    page = at._registered_pages[at._finished_page_script_hash]["script_path"]
    assert Path(page).name == "activations.py"
    assert "activations_request" not in at.session_state
    assert "shipped:digits" in [s.value for s in at.selectbox]


def test_evaluation_is_computed_once_per_model_and_data_set(data_dir, monkeypatch):
    calls = []
    real = eval_view.run_evaluation
    monkeypatch.setattr(eval_view, "run_evaluation", lambda *a, **k: calls.append(a[-1]) or real(*a, **k))
    # A model trained in this session (here: an untrained one), next to the shipped ones.
    config = TrainConfig(dataset="mnist")
    ckpt = Checkpoint(config, LeNet(config.model).eval(), "mnist", DIGIT_CLASSES, {})
    at = open_evaluate(lenet_runs={7: SessionRun(7, "my run", config, None, ckpt)})
    at.run()
    at.selectbox(key="evaluate_model").set_value("run:7").run()
    at.run()
    at.selectbox(key="evaluate_model").set_value("shipped:digits").run()
    assert not at.exception
    assert calls == ["mnist", "mnist"]  # once for the shipped model, once for the session's
    assert len(at.session_state["evaluate_cache"]) == 1


def test_missing_data_names_the_data_set_and_how_to_get_it(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("LENET_DATA_DIR", str(tmp_path / "nothing_here"))
    at = open_evaluate()
    assert "MNIST digits is missing" in at.error[0].value
    text = "\n".join(m.value for m in at.markdown)
    assert "network is unreachable" in text and "`LENET_DATA_DIR=DIR`" in text and "`DIR/mnist/`" in text
    assert not at.get("plotly_chart") and not gallery_buttons(at)
