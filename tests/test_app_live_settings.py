"""The run panel's live settings and steps by hand under AppTest (a pool of workers trains), and the
marks they leave on the curves and in the runs table."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lenet_app import curves, server
from lenet_app.runs import runs_table
from lenet_core.runs import Run, list_runs
from waiting import wait_for

APP = Path(__file__).resolve().parents[1] / "lenet_lab.py"
CHANGE = {"step": 30, "setting": "lr", "old": 0.1, "value": 0.9}


def test_a_change_is_marked_on_the_loss_and_accuracy_curves():
    live = {"curve": {"step": list(range(1, 61)), "loss": [2.3] * 60, "width": 1}, "changes": [CHANGE],
            "epochs": [{"epoch": e, "train_loss": 2.3, "train_acc": 0.1, "val_loss": 2.3, "val_acc": 0.1,
                        "samples_per_s": 1.0, "epoch_time": 1.0} for e in (1, 2)]}
    figures = curves.run_figures(live, total_steps=100, total_epochs=5)
    for name, x in (("loss-per-step", 29.5), ("loss-per-epoch", 29 / 20), ("val-accuracy", 29 / 20)):
        (shape,) = figures[name]["layout"]["shapes"]
        assert shape["x0"] == shape["x1"] == pytest.approx(x), name
        assert any(a["text"] == "lr 0.1→0.9" for a in figures[name]["layout"]["annotations"]), name
    assert "shapes" not in curves.run_figures({**live, "changes": []}, 100, 5)["loss-per-step"]["layout"]


def test_the_runs_table_says_what_changed_while_training(tmp_path):
    from lenet_core.train import TrainConfig
    a, b = Run.create(TrainConfig(), tmp_path), Run.create(TrainConfig(), tmp_path)
    a.set_status("running", changes=[{**CHANGE, "step": 1200}])
    assert [r["changed while training"] for r in runs_table([a.info(), b.info()])] == ["lr 0.1 -> 0.9 at step 1,200",
                                                                                     "–"]
    assert "changed while training" not in runs_table([b.info()])[0]


@pytest.fixture
def runs_root(tmp_path, monkeypatch, tiny_data_dir, tmp_path_factory):
    monkeypatch.setenv("LENET_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setenv("LENET_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path / "runs"))
    yield tmp_path / "runs"
    server.stop_executor()


def control(at, kind, label):
    return next(w for w in getattr(at, kind) if w.label == label)


def setting(at, label):
    return next(w for kind in ("selectbox", "number_input", "select_slider", "slider") for w in getattr(at, kind)
                if w.label == label)


def test_the_panel_changes_the_learning_rate_and_steps_a_paused_run(runs_root, tmp_path, monkeypatch):
    # A lecture scenario with these very settings, that plans a change by hand while it trains.
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "plan.toml").write_text('title = "Plan"\ndataset = "mnist"\nepochs = 200\n'
                                                       'batch_size = 8\n[live]\nlr = 0.5\nwhen = "later"\n')
    monkeypatch.setenv("LENET_SCENARIOS_DIR", str(tmp_path / "scenarios"))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["lenet_session_token"] = "browser-a"
    at.run()
    at.switch_page("views/train.py").run()
    setting(at, "Data set").set_value("mnist").run()
    setting(at, "Epochs").set_value(200).run()
    setting(at, "Batch size").set_value(8).run()  # 32 steps an epoch of the tiny data: it trains a while
    control(at, "button", "Start training").click().run()
    (info,) = list_runs(runs_root)
    run = Run(info.path)
    wait_for(lambda: run.info().status == "running" and run.info().steps_done > 0)
    at.run()
    control(at, "button", "Pause").click().run()
    wait_for(lambda: run.info().status == "paused")
    at.run()
    assert not at.exception
    lr = control(at, "select_slider", "Learning rate, now")
    assert lr.value == 0.1
    lr.set_value(0.9).run()
    assert run.control()["settings"] == {"lr": 0.9} and not at.exception
    steps = run.info().steps_done
    control(at, "button", "One step").click().run()
    wait_for(lambda: run.info().steps_done == steps + 1)
    wait_for(lambda: run.has_checkpoint() and run.load_checkpoint().training.step == steps + 1)
    info = run.info()
    assert info.status == "paused" and info.changes == [{"step": steps + 1, "setting": "lr", "old": 0.1,
                                                         "value": 0.9}]
    at.run()
    assert any(f"lr 0.1 → 0.9 at step {steps + 1:,}" in c.value for c in at.caption)
    assert control(at, "select_slider", "Learning rate, now").value == 0.9
    assert not any(b.label.startswith("lr 0.5 now") for b in at.button)  # no scenario picked
    at.session_state["train.scenario"] = "plan"
    at.run()
    control(at, "button", "lr 0.5 now (later)").click().run()
    assert run.control()["settings"] == {"lr": 0.5} and control(at, "select_slider", "Learning rate, now").value == 0.5
    assert control(at, "button", "lr 0.5 now (later)").disabled  # done: it is the value now
    control(at, "button", "Stop").click().run()
    wait_for(lambda: run.info().status == "stopped")
    at.run()
    assert not any(w.label == "Learning rate, now" for w in at.select_slider)  # an ended run has none
    table = next(d.value for d in at.dataframe if "run" in d.value.columns)
    assert list(table["changed while training"]) == [f"lr 0.1 -> 0.9 at step {steps + 1:,}"]
