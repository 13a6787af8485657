"""The Evaluate page (AppTest) and the helpers behind it (lenet_app/evaluation.py)."""
import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.proto.WidgetStates_pb2 import WidgetStates
from streamlit.testing.v1 import AppTest

import lenet_core.data as data_module
from lenet_app import evaluation as eval_view
from lenet_app.datasets import missing_data_markdown
from lenet_app.models import shipped_models
from lenet_app.session import owner_of
from lenet_core.checkpoint import Checkpoint
from lenet_core.data import DIGIT_CLASSES, load_dataset
from lenet_core.model import LeNet
from lenet_core.runs import Run
from lenet_core.train import TrainConfig, evaluate
from synthetic import synthetic_idx

FRAME = Path(__file__).resolve().parents[1] / "lenet_lab.py"
EVALUATE = "views/evaluate.py"
SIZE = eval_view.GALLERY_SIZE


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
    at = AppTest.from_file(str(FRAME), default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(EVALUATE).run()
    assert not at.exception, at.exception
    return at


def gallery_buttons(at):
    return [b for b in at.button if (b.key or "").startswith("evaluate_open_")]


def shown(at) -> list[int]:
    return [int(b.key.removeprefix("evaluate_open_")) for b in gallery_buttons(at)]


def span(at) -> str:
    """The gallery's 'x–y of N kind' line."""
    return next(m.value for m in at.markdown if " of " in m.value and "Open one in Activations" in m.value)


def click_cell(at, true_class: int, predicted: int, n: int = 10) -> AppTest:
    """What the browser sends for a click on a confusion cell: the chart's selection state, as
    Streamlit's frontend reports a click on one of the figure's markers. AppTest has no plotly
    interaction, so this adds that widget state to the others by hand (AppTest._run)."""
    chart = next(c for c in at.get("plotly_chart") if c.key == eval_view.CONFUSION_KEY)
    point = {"curve_number": 1, "point_number": true_class * n + predicted,
             "point_index": true_class * n + predicted, "x": str(predicted), "y": str(true_class),
             "customdata": [true_class, predicted, 1, 0.1]}
    states = WidgetStates()
    states.CopyFrom(at._tree.get_widget_states())
    state = states.widgets.add()
    state.id = chart.proto.id
    state.string_value = json.dumps({"selection": {"points": [point], "point_indices": [point["point_index"]],
                                                   "box": [], "lasso": []}})
    at._run(states)
    assert not at.exception, at.exception
    return at


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


def test_select_images_filters_orders_and_shuffles():
    ev = _toy_evaluation()
    assert ev.mistakes.tolist() == [1, 3, 4, 5, 7]
    assert eval_view.select_images(ev).tolist() == [5, 3, 4, 1, 7]  # surest mistakes first
    assert eval_view.select_images(ev, true_class=2).tolist() == [5, 4]
    assert eval_view.select_images(ev, predicted=1).tolist() == [5, 4, 1]
    assert eval_view.select_images(ev, true_class=2, predicted=1).tolist() == [5, 4]
    assert len(eval_view.select_images(ev, true_class=1, predicted=2)) == 0
    orders = {tuple(eval_view.select_images(ev, order="random", seed=s)) for s in range(6)}
    assert len(orders) > 1 and all(sorted(o) == [1, 3, 4, 5, 7] for o in orders)
    assert eval_view.top_confusions(ev, k=2) == [(2, 1, 2), (0, 1, 1)]


def test_a_diagonal_cell_selects_that_class_s_correct_answers():
    ev = _toy_evaluation()
    assert eval_view.select_images(ev, true_class=0, predicted=0).tolist() == [0]
    assert eval_view.select_images(ev, true_class=2, predicted=2).tolist() == [6]
    assert sorted(eval_view.select_images(ev, 1, 1, order="random", seed=3).tolist()) == [2]


def test_gallery_pages_slice_the_images_and_say_where_they_are():
    images = np.arange(151)
    first = eval_view.gallery_page(images, 1)
    assert first.indices.tolist() == list(range(24)) and (first.page, first.pages) == (1, 7)
    assert first.span == "1–24 of 151"
    second = eval_view.gallery_page(images, 2)
    assert second.indices.tolist() == list(range(24, 48)) and second.span == "25–48 of 151"
    last = eval_view.gallery_page(images, 7)
    assert last.indices.tolist() == list(range(144, 151)) and last.span == "145–151 of 151"
    assert eval_view.gallery_page(images, 99).page == 7 and eval_view.gallery_page(images, 0).page == 1
    assert eval_view.gallery_page(np.arange(5), 1).span == "1–5 of 5"
    empty = eval_view.gallery_page(np.arange(0), 3)
    assert (empty.page, empty.pages, empty.total, len(empty.indices)) == (1, 1, 0, 0)


def test_a_selection_event_names_the_clicked_cell():
    cell = eval_view.cell_from_selection
    point = {"curve_number": 1, "point_index": 23, "customdata": [2, 3, 7, 0.05], "x": "3", "y": "2"}
    assert cell({"points": [point], "point_indices": [23], "box": [], "lasso": []}, 10) == (2, 3)
    assert cell({"points": [{"curve_number": 1, "point_index": 47}]}, 10) == (4, 7)  # no customdata
    assert cell({"points": [{"curve_number": 1, "point_index": 0}]}, 10) == (0, 0)
    # Nothing selected (a second click deselects), the heatmap's own trace, nonsense: no cell.
    assert cell({"points": [], "point_indices": [], "box": [], "lasso": []}, 10) is None
    assert cell(None, 10) is None
    assert cell({"points": [{"curve_number": 0, "point_index": 5}]}, 10) is None
    assert cell({"points": [{"curve_number": 1, "customdata": [12, 0]}]}, 10) is None
    assert cell({"points": [{"curve_number": 1, "customdata": ["x", None]}]}, 10) is None


def test_figures_show_counts_class_names_and_clickable_cells():
    ev = _toy_evaluation()
    fig = eval_view.confusion_figure(ev)
    heat, cells = fig.data
    assert list(heat.x) == list(heat.y) == ["a", "b", "c"]
    assert heat.text.tolist() == [["1", "1", "1"], ["1", "1", ""], ["", "2", "1"]]  # zeros left blank
    assert heat.z[2][1] == pytest.approx(np.sqrt(2 / 3))
    # One invisible marker per cell, row by row, naming its cell; the hover says a cell can be clicked.
    assert cells.type == "scatter" and len(cells.x) == 9 and cells.marker.opacity == 0
    assert (cells.y[7], cells.x[7]) == ("c", "b") and cells.customdata[7][:3].tolist() == [2, 1, 2]
    assert "click to see these images" in cells.text[7] and cells.text[5] == ""  # nothing to see in an empty cell
    assert "correct answers" in cells.text[0]
    assert fig.layout.xaxis.fixedrange and fig.layout.yaxis.fixedrange and not fig.layout.shapes
    framed = eval_view.confusion_figure(ev, 2, 1).layout.shapes
    assert len(framed) == 1 and (framed[0].x0, framed[0].x1, framed[0].y0, framed[0].y1) == (0.5, 1.5, 1.5, 2.5)
    row = eval_view.confusion_figure(ev, true_class=0).layout.shapes[0]
    assert (row.x0, row.x1, row.y0, row.y1) == (-0.5, 2.5, -0.5, 0.5)
    bars = eval_view.per_class_figure(ev).data[0]
    assert list(bars.y) == ["a", "b", "c"] and list(bars.x) == pytest.approx([1 / 3, 1 / 2, 1 / 3])
    thumb = eval_view.thumbnail(torch.arange(28 * 28).reshape(28, 28) % 256)
    assert thumb.size == (112, 112) and thumb.getpixel((3, 0)) == 0 and thumb.getpixel((4, 0)) == 1


def test_missing_data_markdown_makes_paths_and_commands_copyable(data_dir, monkeypatch):
    monkeypatch.setenv("LENET_DATA_DIR", str(data_dir.parent / "empty_dir"))
    with pytest.raises(data_module.DataUnavailableError) as err:
        load_dataset("mnist")
    md = missing_data_markdown(str(err.value))
    assert f"- `{data_dir.parent / 'empty_dir' / 'mnist'}`" in md
    assert "`LENET_DATA_DIR=DIR`" in md and "`DIR/mnist/`" in md and "`--data-dir DIR`" in md


# -- the page ------------------------------------------------------------------------------

def test_evaluate_page_shows_accuracy_figures_and_gallery(data_dir):
    at = open_evaluate()
    entry = shipped_models()["shipped:digits"]  # the default model
    assert at.selectbox(key="model").value == "shipped:digits"
    data, ref = reference(entry.model, "mnist")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"] == f"{ref['accuracy']:.1%}"
    mistakes = ref["count"] - sum(np.diag(ref["confusion"]))
    assert metrics["Mistakes"] == f"{mistakes:,} of {ref['count']:,}"
    assert len(at.get("plotly_chart")) == 2
    assert [s.value for s in at.subheader][:3] == ["Confusion matrix", "Accuracy per class", "Mistakes"]
    buttons = gallery_buttons(at)
    assert len(buttons) == min(SIZE, mistakes) > 0
    assert all(b.label == "Open in Activations" for b in buttons)
    assert span(at).startswith(f"**1–{min(SIZE, mistakes)} of {mistakes}** mistakes")


def test_gallery_filters_by_true_and_predicted_class(data_dir):
    at = open_evaluate()
    ev = eval_view.evaluation_for(shipped_models()["shipped:digits"], load_dataset("mnist"))
    true_class, predicted, _ = eval_view.top_confusions(ev, 1)[0]
    at.selectbox(key="evaluate_true").set_value(true_class).run()
    at.selectbox(key="evaluate_pred").set_value(predicted).run()
    assert not at.exception
    expected = [i for i in ev.mistakes if ev.labels[i] == true_class and ev.predictions[i] == predicted]
    assert sorted(shown(at)) == sorted(expected)[:SIZE] or len(expected) > SIZE
    assert all(i in expected for i in shown(at))


def test_clicking_a_confusion_cell_sets_the_filters_and_the_gallery(data_dir):
    at = open_evaluate()
    ev = eval_view.evaluation_for(shipped_models()["shipped:digits"], load_dataset("mnist"))
    true_class, predicted, count = eval_view.top_confusions(ev, 1)[0]
    click_cell(at, true_class, predicted)
    # The two selectboxes show the cell, and the gallery holds its images, surest first.
    assert at.selectbox(key="evaluate_true").value == true_class
    assert at.selectbox(key="evaluate_pred").value == predicted
    expected = eval_view.select_images(ev, true_class, predicted)
    assert len(expected) == count and shown(at) == expected[:SIZE].tolist()
    assert span(at).startswith(f"**1–{min(count, SIZE)} of {count}** mistakes")
    # The filters stay the user's: clearing one widens the gallery again.
    at.selectbox(key="evaluate_pred").set_value(None).run()
    assert shown(at) == eval_view.select_images(ev, true_class)[:SIZE].tolist()
    assert at.selectbox(key="evaluate_true").value == true_class


def test_clicking_a_diagonal_cell_shows_correct_answers(data_dir):
    at = open_evaluate()
    ev = eval_view.evaluation_for(shipped_models()["shipped:digits"], load_dataset("mnist"))
    cls = int(np.argmax(np.diag(ev.confusion)))
    click_cell(at, cls, cls)
    assert "Correct answers" in [s.value for s in at.subheader]
    assert any("correct answers" in i.value for i in at.info)
    ids = shown(at)
    assert ids and all(ev.labels[i] == ev.predictions[i] == cls for i in ids)
    right = ev.confusion[cls, cls]
    assert span(at).startswith(f"**1–{min(SIZE, right)} of {right}** correct answers")


def test_gallery_pages_through_every_mistake(data_dir):
    at = open_evaluate()
    ev = eval_view.evaluation_for(shipped_models()["shipped:digits"], load_dataset("mnist"))
    everything = eval_view.select_images(ev).tolist()
    assert len(everything) > 2 * SIZE  # 200 images and a model trained elsewhere: enough for 3 pages
    total = len(everything)
    assert at.button(key="evaluate_prev").disabled and not at.button(key="evaluate_next").disabled
    at.button(key="evaluate_next").click().run()
    assert shown(at) == everything[SIZE:2 * SIZE]
    assert span(at).startswith(f"**{SIZE + 1}–{2 * SIZE} of {total}** mistakes")
    at.button(key="evaluate_next_bottom").click().run()  # the pager under the gallery too
    pages = -(-total // SIZE)
    assert shown(at) == everything[2 * SIZE:3 * SIZE]
    for _ in range(pages - 3):  # to the last page, where Next is greyed out
        at.button(key="evaluate_next").click().run()
    assert shown(at) == everything[(pages - 1) * SIZE:] and at.button(key="evaluate_next").disabled
    assert span(at).startswith(f"**{(pages - 1) * SIZE + 1}–{total} of {total}**")
    at.button(key="evaluate_prev").click().run()
    assert shown(at) == everything[(pages - 2) * SIZE:(pages - 1) * SIZE]
    # A new filter starts again at page 1.
    at.segmented_control(key="evaluate_order").set_value("random").run()
    assert span(at).startswith(f"**1–{SIZE} of {total}**") and at.button(key="evaluate_prev").disabled
    assert not at.exception


def test_choices_are_kept_across_page_switches(data_dir):
    at = open_evaluate()
    ev = eval_view.evaluation_for(shipped_models()["shipped:digits"], load_dataset("mnist"))
    true_class = int(ev.labels[ev.mistakes[0]])
    at.selectbox(key="evaluate_true").set_value(true_class).run()
    at.segmented_control(key="evaluate_order").set_value("random").run()
    at.switch_page("views/home.py").run()
    at.switch_page(EVALUATE).run()
    assert not at.exception
    assert at.selectbox(key="evaluate_true").value == true_class
    assert at.segmented_control(key="evaluate_order").value == "random"

    at.selectbox(key="evaluate_true").set_value(None).run()
    at.segmented_control(key="evaluate_order").set_value("surest first").run()
    at.button(key="evaluate_next").click().run()
    page2 = shown(at)
    at.switch_page("views/home.py").run()
    at.switch_page(EVALUATE).run()
    assert shown(at) == page2


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
    assert sent == [("views/activations.py", {"model_key": "shipped:digits", "dataset": "mnist", "index": index,
                                              "saliency": True})]
    # The run finished on the Activations page (AppTest keeps no public record of the page),
    # which took the request and picked the model it names.
    page = at._registered_pages[at._finished_page_script_hash]["script_path"]
    assert Path(page).name == "activations.py"
    assert "activations_request" not in at.session_state
    assert at.selectbox(key="model").value == "shipped:digits"


def test_evaluation_is_computed_once_per_model_and_data_set(data_dir, monkeypatch, tmp_path):
    calls = []
    real = eval_view.run_evaluation
    monkeypatch.setattr(eval_view, "run_evaluation", lambda *a, **k: calls.append(a[-1]) or real(*a, **k))
    # This browser's run folder with a checkpoint (here: an untrained model), next to the shipped ones.
    token = "evaluate-test-browser"
    config = TrainConfig(dataset="mnist")
    run = Run.create(config, tmp_path / "runs", owner=owner_of(token))
    run.save_checkpoint(Checkpoint(config, LeNet(config.model).eval(), "mnist", DIGIT_CLASSES, {}))
    at = open_evaluate(lenet_session_token=token)
    at.run()
    at.selectbox(key="model").set_value(f"run:{run.id}").run()
    at.run()
    assert not at.exception
    assert at.selectbox(key="model").value == f"run:{run.id}" and len(gallery_buttons(at)) > 0
    at.selectbox(key="model").set_value("shipped:digits").run()
    assert not at.exception
    assert calls == ["mnist", "mnist"]  # once for the shipped model, once for the run's
    assert len(at.session_state["evaluate_cache"]) == 1


def test_a_run_whose_data_set_is_missing_says_so(data_dir, monkeypatch, tmp_path):
    token = "evaluate-test-browser"
    config = TrainConfig(dataset="fashion-mnist")
    run = Run.create(config, tmp_path / "runs", owner=owner_of(token))
    run.save_checkpoint(Checkpoint(config, LeNet(config.model).eval(), "fashion-mnist",
                                   data_module.FASHION_CLASSES, {}))
    for f in (data_dir / "fashion-mnist").iterdir():
        f.unlink()
    at = open_evaluate(lenet_session_token=token, model=f"run:{run.id}")
    assert at.selectbox(key="model").value == f"run:{run.id}"
    assert "Fashion-MNIST is missing" in at.error[0].value
    assert not at.get("plotly_chart") and not gallery_buttons(at)


def test_missing_data_names_the_data_set_and_how_to_get_it(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("LENET_DATA_DIR", str(tmp_path / "nothing_here"))
    at = open_evaluate()
    assert "MNIST digits is missing" in at.error[0].value
    text = "\n".join(m.value for m in at.markdown)
    assert "network is unreachable" in text and "`LENET_DATA_DIR=DIR`" in text and "`DIR/mnist/`" in text
    assert not at.get("plotly_chart") and not gallery_buttons(at)
