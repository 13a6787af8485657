"""The Activations page's test-set map, top images and map over training under AppTest (tiny
synthetic data, the run folders of test_app_activations)."""
import time

import numpy as np

from charts import array, chart, chart_keys
from lenet_app import feature_views
from lenet_core import feature_map, top_images
from test_app_activations import open_page, runs, runs_root, with_data, without_data  # noqa: F401 (fixtures)


def test_test_set_map_pca_then_a_click_opens_the_image(with_data):
    run = with_data["recorded"]
    at = open_page({"act_view": "Test-set map"}, model=f"run:{run.id}")
    assert at.segmented_control(key="map.method").value == "PCA"
    fig = chart(at, "map.chart")
    traces = fig["data"]
    assert [t["name"] for t in traces] == [str(d) for d in range(10)] and {t["type"] for t in traces} == {"scattergl"}
    shown = np.concatenate([array(t["customdata"]).reshape(-1) for t in traces])
    assert sorted(shown.tolist()) == list(range(200))                # every test image, once
    assert "mistakes" in "\n".join(c.value for c in at.caption)
    path = feature_map.cache_path(run.path, "PCA", "mnist")
    assert path.is_file()                                           # kept with the run
    cached = feature_map.load_map(path)
    assert len(cached.labels) == 200
    # A click on a point: the One input view of that very test image.
    index = int(array(traces[3]["customdata"]).reshape(-1)[0])
    assert cached.labels[index] == 3
    # AppTest cannot click a plotly point: set what the chart's on_select leaves (the Chromium
    # test, test_browser_feature_views.py, clicks a real one).
    at.session_state["activations_request"] = {"model_key": f"run:{run.id}", "dataset": "mnist", "index": index,
                                               "saliency": True}
    at.run()
    assert at.segmented_control(key="act_view").value == "One input"
    assert any(f"test image #{index}," in c.value for c in at.caption)


def test_mistakes_only_and_clicked_index():
    sel = {"points": [{"customdata": [17]}], "box": [], "lasso": []}
    assert feature_views.clicked_index(sel) == 17
    assert feature_views.clicked_index({"points": [{"customdata": [17]}], "box": [{"x": [0, 1]}]}) is None
    assert feature_views.clicked_index({"points": [{"customdata": "x"}]}) is None
    assert feature_views.clicked_index(None) is None
    assert feature_views.clicked_index({"points": [{"customdata": {"0": 19}}]}) == 19   # as Chromium sent it
    # Without customdata, the trace and the position name the point.
    gl = {"points": [{"curve_number": 1, "point_index": 2}], "box": [], "lasso": []}
    assert feature_views.clicked_index(gl, [[5, 6], [7, 8, 9]]) == 9
    assert feature_views.clicked_index({"points": [{"curve_number": 4, "point_index": 0}]}, [[5]]) is None
    coords = np.zeros((6, 2), np.float32)
    labels, preds = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 0, 2])
    fig = feature_views.scatter_figure(coords, labels, preds, ["a", "b", "c"], mistakes_only=True)
    assert [len(t.x) for t in fig.data] == [1, 0, 1]
    fig = feature_views.scatter_figure(coords, labels, preds, ["a", "b", "c"])
    assert list(fig.data[0].marker.symbol) == ["circle", "x"]


def test_slow_projection_runs_in_the_background_and_is_cached(with_data):
    run = with_data["recorded"]
    at = open_page({"act_view": "Test-set map"}, model=f"run:{run.id}")
    at.segmented_control(key="map.method").set_value("t-SNE").run()
    assert "map.chart" not in chart_keys(at)
    at.button(key="map.start").click().run()
    assert not at.exception
    path = feature_map.cache_path(run.path, "t-SNE", "mnist")
    deadline = time.time() + 120
    while not path.exists() and time.time() < deadline:
        time.sleep(0.5)
    job = feature_views.job_for(str(path))
    while job is not None and not job.done and job.error is None and time.time() < deadline:
        time.sleep(0.2)
    assert job is not None and job.done and job.error is None
    at.run()
    assert not at.exception and "map.chart" in chart_keys(at)
    assert "t-SNE" in "\n".join(c.value for c in at.caption)


def test_top_images_view(with_data):
    run = with_data["recorded"]
    at = open_page({"act_view": "Top images"}, model=f"run:{run.id}")
    assert not at.exception
    assert at.selectbox(key="top.layer").value == "conv1_act"
    fig = chart(at, "top.chart")
    assert [t["type"] for t in fig["data"]] == ["image", "scatter"]
    cached = top_images.load_top(top_images.cache_path(run.path, "mnist"))
    assert cached is not None
    # The markers carry the ranked test indices, unit by unit.
    marks = array(fig["data"][1]["customdata"])
    assert np.array_equal(marks[:, 0].astype(int), cached.layers["conv1_act"][1].reshape(-1))
    at.selectbox(key="top.layer").set_value("conv2_act").run()
    assert not at.exception and len(array(chart(at, "top.chart")["data"][1]["customdata"])) == 8 * 9
    at.toggle(key="top.dense").set_value(True).run()
    assert at.selectbox(key="top.layer").options == ["conv1", "conv2", "fc1"]
    at.selectbox(key="top.layer").set_value("fc1_act").run()
    assert not at.exception and len(array(chart(at, "top.chart")["data"][1]["customdata"])) == 16 * 9


def test_map_over_training_on_the_epoch_view(with_data):
    run = with_data["recorded"]
    at = open_page({"act_view": "Epoch by epoch"}, model=f"run:{run.id}")
    assert not at.exception
    assert "act.fmap.chart" not in chart_keys(at)   # behind a toggle: the scrubber comes first
    at.toggle(key="act.fmap").set_value(True).run()
    fig = chart(at, "act.fmap.chart")
    last = [array(t["x"]).tolist() for t in fig["data"]]
    at.select_slider(key="act.fmap.epoch").set_value(0).run()
    first = [array(t["x"]).tolist() for t in chart(at, "act.fmap.chart")["data"]]
    assert first != last and chart(at, "act.fmap.chart")["layout"]["xaxis"]["range"] == fig["layout"]["xaxis"]["range"]


def test_views_without_data_explain(without_data):
    run = without_data["recorded"]
    for view in feature_views.VIEWS:
        at = open_page({"act_view": view}, model=f"run:{run.id}")
        assert not at.exception
        assert any("LENET_DATA_DIR" in w.value for w in at.warning)


def test_evaluate_links_to_the_map(with_data):
    at = open_page()
    at.switch_page("views/evaluate.py").run()
    assert not at.exception
    at.button(key="open_map").click().run()
    assert not at.exception
    assert at.segmented_control(key="act_view").value == "Test-set map"
    assert "map.chart" in chart_keys(at)
