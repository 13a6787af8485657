"""The Train page's map over training under AppTest: a run trained by the pool's workers records
features.pt, and the toggle below its panel replays it epoch by epoch."""
from charts import array, chart, chart_keys
from lenet_core.runs import Run, list_runs
from test_app_train import env, runs_root, start_button, train_page, wait_for, widget_by_label  # noqa: F401


def test_the_map_over_training_beside_a_run(runs_root):
    at = train_page()
    widget_by_label(at, "Data set").set_value("mnist").run()
    next(b for b in at.button if b.label == "modern").click().run()
    widget_by_label(at, "Epochs").set_value(2).run()
    start_button(at).click().run()
    (info,) = list_runs(runs_root)
    wait_for(lambda: Run(info.path).info().status == "finished")
    at.run()
    at.toggle(key="train.fmap").set_value(True).run()
    assert not at.exception
    assert "train.fmap.chart" in chart_keys(at)
    slider = at.select_slider(key="train.fmap.epoch")
    assert slider.options == ["0", "1", "2"] and slider.value == 2
    fig = chart(at, "train.fmap.chart")
    assert [t["name"] for t in fig["data"]] == [str(d) for d in range(10)]
    before = [array(t["y"]).tolist() for t in fig["data"]]
    slider.set_value(0).run()
    assert [array(t["y"]).tolist() for t in chart(at, "train.fmap.chart")["data"]] != before
