"""The Train page under AppTest: controls made from the setting declarations, values refused where
they are typed, presets and scenarios as actions, and runs started into run folders that a pool of
worker processes trains (the page never trains)."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lenet_app import runs as app_runs
from lenet_app import server
from lenet_core.model import ModelConfig
from lenet_core.runs import Run, list_runs
from lenet_core.settings import declared
from lenet_core.train import TrainConfig
from waiting import wait_for

APP = Path(__file__).resolve().parents[1] / "lenet_lab.py"


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_data_dir):
    """One data folder for the module (the pool's workers read it), a runs root per test."""
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


def train_page(token: str = "browser-a") -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["lenet_session_token"] = token  # one browser (AppTest has no cookies)
    at.run()
    at.switch_page("views/train.py").run()
    assert not at.exception, at.exception
    return at


def widget_by_label(at, label):
    for kind in ("selectbox", "number_input", "slider", "select_slider"):
        for w in getattr(at, kind):
            if w.label == label:
                return w
    raise AssertionError(f"no control labelled {label!r}")


def start_button(at):
    return next(b for b in at.button if b.label == "Start training")


def errors(at) -> str:
    return "\n".join(e.value for e in at.error)


def test_every_setting_has_its_declared_control(runs_root):
    at = train_page()
    for cls in (ModelConfig, TrainConfig):
        for name, (meta, kind) in declared(cls).items():
            if not meta.cli or kind.startswith("tuple"):
                continue
            w = widget_by_label(at, meta.label)
            assert w.help == meta.help
    assert [s.label for s in at.slider if s.label.endswith("layers")] == ["Conv layers", "Dense layers"]
    assert start_button(at).disabled is False


@pytest.mark.parametrize("typed", [0, -5, 100000])
def test_a_value_out_of_bounds_is_refused_where_it_is_typed(runs_root, typed):
    at = train_page()
    widget_by_label(at, "Epochs").set_value(typed).run()
    assert f"Epochs must be 1 to 200, got {typed:,}" in errors(at)
    assert start_button(at).disabled is True  # never silently the old value
    widget_by_label(at, "Epochs").set_value(12).run()
    assert "Epochs must" not in errors(at) and start_button(at).disabled is False


def test_a_layer_too_wide_is_refused_under_its_box(runs_root):
    at = train_page()
    next(n for n in at.number_input if n.label == "fc1").set_value(2_000_000).run()
    assert "Dense widths entry 1 must be 1 to 1,024" in errors(at)
    assert start_button(at).disabled is True


def test_a_preset_is_an_action_and_the_page_says_which_it_matches(runs_root):
    at = train_page()
    assert any("Your next run: **classic**," in c.value for c in at.caption)
    next(b for b in at.button if b.label == "modern").click().run()
    assert widget_by_label(at, "Activation").value == "relu" and widget_by_label(at, "Pooling").value == "max"
    assert any("Your next run: **modern**," in c.value for c in at.caption)
    widget_by_label(at, "Kernel size").set_value(3).run()
    assert any("Your next run: **modern** with another kernel size" in c.value for c in at.caption)


def test_a_lecture_scenario_sets_every_control_in_one_click(runs_root):
    at = train_page()
    pills = next(p for p in at.pills if p.label == "Lecture scenarios")
    pills.set_value("23-ex2-three-convs").run()
    assert next(s for s in at.slider if s.label == "Conv layers").value == 3
    assert widget_by_label(at, "Padding").value == "same" and widget_by_label(at, "Activation").value == "relu"
    assert any("28 → 14 → 7 → 3" in c.value for c in at.caption)


def test_start_puts_a_run_folder_in_the_queue_and_a_worker_trains_it(runs_root):
    at = train_page()
    widget_by_label(at, "Data set").set_value("mnist").run()
    next(b for b in at.button if b.label == "modern").click().run()
    widget_by_label(at, "Epochs").set_value(2).run()
    start_button(at).click().run()
    assert not at.exception and not errors(at)
    (info,) = list_runs(runs_root)
    assert info.owner is not None and info.name == "modern · mnist · epochs 2"
    wait_for(lambda: Run(info.path).info().status == "finished")
    at.run()
    assert any(h.value.startswith("modern · mnist · epochs 2 · finished") for h in at.subheader)
    table = next(d.value for d in at.dataframe if "run" in d.value.columns)
    assert list(table["run"]) == ["modern · mnist · epochs 2"] and list(table["epochs"]) == ["2 of 2"]

    # Another browser sees none of it.
    other = train_page("browser-b")
    assert not any(h.value.startswith("modern") for h in other.subheader)
    assert not any("run" in d.value.columns for d in other.dataframe)


def test_continuing_a_run_extends_its_counters_and_curves(runs_root):
    at = train_page()
    widget_by_label(at, "Data set").set_value("mnist").run()
    next(b for b in at.button if b.label == "modern").click().run()
    widget_by_label(at, "Epochs").set_value(2).run()
    start_button(at).click().run()
    (first,) = list_runs(runs_root)
    wait_for(lambda: Run(first.path).info().status == "finished")
    at.run()
    widget_by_label(at, "Weights").set_value(first.id).run()
    assert widget_by_label(at, "Epochs (in all; 2 done)").value == 7  # five more by default
    widget_by_label(at, "Epochs (in all; 2 done)").set_value(4).run()
    start_button(at).click().run()
    second = next(i for i in list_runs(runs_root) if i.path != first.path)
    assert second.origin["run"] == first.id and second.origin["epochs"] == 2  # it may be training already
    wait_for(lambda: Run(second.path).info().status == "finished")
    info = Run(second.path).info()
    assert info.epochs_done == 4 and [m.epoch for m in Run(second.path).epochs()] == [1, 2, 3, 4]
    steps, _ = Run(second.path).steps()
    assert steps.tolist() == list(range(1, info.steps_done + 1))  # one curve, counted on


def test_a_browser_has_a_limit_of_runs_waiting_or_training(runs_root, monkeypatch):
    monkeypatch.setenv("LENET_MAX_LIVE_RUNS", "1")
    at = train_page()
    widget_by_label(at, "Data set").set_value("mnist").run()
    widget_by_label(at, "Epochs").set_value(200).run()
    widget_by_label(at, "Batch size").set_value(8).run()
    start_button(at).click().run()
    start_button(at).click().run()
    assert "the most this server allows at once (1)" in errors(at)
    (info,) = list_runs(runs_root)
    Run(info.path).request(stop=True)
    wait_for(lambda: not Run(info.path).info().live)


def test_a_browser_has_a_limit_of_runs_kept(runs_root, monkeypatch):
    from lenet_app.session import owner_of

    monkeypatch.setenv("LENET_MAX_RUNS", "2")
    for seed in range(2):
        run = Run.create(TrainConfig(seed=seed), runs_root, owner=owner_of("browser-a"))
        run.set_status("finished", "Finished.")
    at = train_page()
    start_button(at).click().run()
    assert "kept 2 runs, the most this server allows (2)" in errors(at) and "Delete" in errors(at)
    assert len(list_runs(runs_root)) == 2


def test_uploads_are_checked_and_kept_as_runs_of_this_browser(runs_root, monkeypatch, tmp_path):
    import io

    import torch

    from lenet_app import session, uploads
    from lenet_core.checkpoint import Checkpoint, checkpoint_bytes
    from lenet_core.data import DIGIT_CLASSES
    from lenet_core.train import build_model

    monkeypatch.setattr(session, "owner", lambda: "browser-a-owner")
    kind, message = uploads.accept(b"not a checkpoint at all", "<b>x</b>.pt")
    assert kind == "error" and "not a LeNet Lab checkpoint" in message and "<b>" not in message
    config = TrainConfig(dataset="mnist")
    good = checkpoint_bytes(Checkpoint(config, build_model(config), "mnist", DIGIT_CLASSES, {"test_accuracy": 0.5}))
    payload = torch.load(io.BytesIO(good), weights_only=True)
    payload["config"]["model"]["dense_widths"] = [2_000_000, 84]
    buf = io.BytesIO()
    torch.save(payload, buf)
    kind, message = uploads.accept(buf.getvalue(), "huge.pt")
    assert kind == "error" and "Dense widths entry 1 must be 1 to 1,024" in message
    assert list_runs(runs_root) == []
    kind, message = uploads.accept(good, "mine.pt")
    assert kind == "ok" and "50.0% test accuracy" in message
    (info,) = list_runs(runs_root)
    # Named for what it is (not the file's name), and marked as uploaded rather than "finished" here.
    assert info.name == "classic · mnist" and info.owner == "browser-a-owner" and info.status == "finished"
    assert app_runs.status_label(info) == "uploaded"
    assert Run(info.path).load_checkpoint().config == config
