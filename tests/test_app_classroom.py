"""The room: the lecturer's Class page (off without a token, behind it with one), student names
picked once and kept, every run listed, a leaderboard, and a stop for any run."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lenet_app.session import owner_of
from lenet_core.model import preset
from lenet_core.runs import Run
from lenet_core.train import TrainConfig

APP = Path(__file__).resolve().parents[1] / "lenet_lab.py"


@pytest.fixture
def room(tmp_path, monkeypatch):
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LENET_LECTURER_TOKEN", "s3cret-token-of-the-class")
    return tmp_path / "runs"


def browser(token: str, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["lenet_session_token"] = token
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def finished(root, token, config, accuracy, name):
    run = Run.create(config, root, owner=owner_of(token), name=name)
    run.set_status("finished", "Finished.", final={"test_accuracy": accuracy}, epochs_done=config.epochs)
    return run


def test_without_a_token_there_is_no_class_page(tmp_path, monkeypatch):
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path))
    monkeypatch.delenv("LENET_LECTURER_TOKEN", raising=False)
    at = browser("x")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("views/classroom.py")


def test_the_class_page_asks_for_the_token_and_refuses_a_wrong_one(room):
    at = browser("lecturer", "views/classroom.py")
    assert not at.dataframe
    at.text_input[0].set_value("guess")
    at.button[0].click().run()
    assert any("not this server's lecturer token" in e.value for e in at.error)
    assert not at.dataframe


def test_names_are_picked_once_and_the_lecturer_sees_every_run_ranks_them_and_stops_one(room):
    ada = browser("ada-browser", "views/train.py")
    ada.text_input(key="train.me").set_value("Ada").run()
    assert browser("ada-browser", "views/train.py").text_input(key="train.me").value == "Ada"  # kept on disk

    finished(room, "ada-browser", TrainConfig(), 0.74, "ada classic")
    finished(room, "bob-browser", TrainConfig(), 0.72, "bob classic")
    finished(room, "bob-browser", TrainConfig(model=preset("modern")), 0.88, "bob modern")
    live = Run.create(TrainConfig(epochs=50), room, owner=owner_of("cy-browser"), name="cy long run")

    at = browser("lecturer", "views/classroom.py")
    at.text_input[0].set_value("s3cret-token-of-the-class")
    at.button[0].click().run()
    table = at.dataframe[0].value
    assert set(table["run"]) == {"ada classic", "bob classic", "bob modern", "cy long run"}
    assert set(table["student"]) == {"Ada", "student " + owner_of("bob-browser")[:4],
                                     "student " + owner_of("cy-browser")[:4]}

    at.selectbox(key="class.value.activation").set_value("sigmoid").run()
    board = at.dataframe[1].value
    assert list(board["student"])[:2] == ["Ada", "student " + owner_of("bob-browser")[:4]]
    assert list(board["accuracy"]) == [74.0, 72.0]  # bob's best with sigmoid, not his modern run
    at.selectbox(key="class.value.activation").set_value("any").run()
    assert list(at.dataframe[1].value["run"])[0] == "bob modern"

    # The lecturer can stop any run.
    at.multiselect(key="class.stop").set_value([live.id]).run()
    next(b for b in at.button if b.label == "Stop 1 run").click().run()
    assert Run(live.path).info().status == "stopped" and Run(live.path).control()["stop"] is True


def test_a_student_cannot_stop_pause_or_delete_anothers_run(room, monkeypatch):
    from lenet_app import runs as app_runs
    from lenet_app import session

    live = Run.create(TrainConfig(), room, owner=owner_of("cy-browser"))
    ended = finished(room, "cy-browser", TrainConfig(), 0.7, "cy done")
    monkeypatch.setattr(session, "owner", lambda: owner_of("ada-browser"))
    monkeypatch.setattr(session, "is_lecturer", lambda: False)
    app_runs.stop(live.info())
    app_runs.pause(live.info(), True)
    app_runs.delete(ended.info())
    assert live.control() == {} and live.info().status == "queued" and ended.path.exists()
    monkeypatch.setattr(session, "owner", lambda: owner_of("cy-browser"))  # its own browser can
    app_runs.stop(live.info())
    assert live.info().status == "stopped"


def in_progress(root, token, name, epochs_done=5, val_acc=0.65):
    """A run half-way through (written as its trainer writes it), its trainer's claim this process."""
    from lenet_core.processes import this_process
    from lenet_core.train import EpochMetrics

    run = Run.create(TrainConfig(), root, owner=owner_of(token), name=name)
    for e in range(1, epochs_done + 1):
        run.append_epoch(EpochMetrics(epoch=e, train_loss=1.0, train_acc=0.5, val_loss=1.0,
                                      val_acc=val_acc - 0.01 * (epochs_done - e), samples_per_s=100.0,
                                      epoch_time=1.0))
    (run.path / "claim.json").write_text(__import__("json").dumps(this_process()))
    run.set_status("running", "Training.", epochs_done=epochs_done, steps_done=epochs_done * 100, total_steps=1000)
    return run


def test_the_class_table_shows_progress_and_validation_of_runs_in_progress_and_uploads_do_not_compete(room):
    from lenet_core.runs import from_checkpoint
    from lenet_core.checkpoint import Checkpoint
    from lenet_core.train import build_model

    in_progress(room, "ada-browser", "ada half way")
    finished(room, "bob-browser", TrainConfig(), 0.80, "bob classic")
    config = TrainConfig()
    from_checkpoint(Checkpoint(config, build_model(config), "fashion-mnist", tuple("abcdefghij"),
                               {"test_accuracy": 0.99}), room, name="bob's upload", owner=owner_of("bob-browser"))
    at = browser("lecturer", "views/classroom.py")
    at.text_input[0].set_value("s3cret-token-of-the-class")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.dataframe, ([e.value for e in at.error], [w.value for w in at.warning], [m.value for m in at.markdown])
    table = at.dataframe[0].value.set_index("run")
    assert table.loc["ada half way", "progress"] == 0.5 and table.loc["ada half way", "validation"] == "65.0%"
    assert table.loc["ada half way", "status"] == "training" and table.loc["ada half way", "test"] == "–"
    assert table.loc["bob's upload", "status"] == "uploaded"
    board = at.dataframe[1].value
    assert list(board["run"]) == ["bob classic"]  # the 99% upload is not on the leaderboard


def test_a_student_reads_that_the_lecturer_stopped_the_run_and_when(room, monkeypatch):
    import time

    from lenet_app import runs as app_runs
    from lenet_app import session

    run = Run.create(TrainConfig(), room, owner=owner_of("cy-browser"), name="cy run")
    with monkeypatch.context() as lecturer:
        lecturer.setattr(session, "owner", lambda: owner_of("lecturer"))
        lecturer.setattr(session, "is_lecturer", lambda: True)
        app_runs.stop(run.info())  # queued: stopped at once
    at = browser("cy-browser", "views/train.py")
    when = time.strftime("%H:%M", time.localtime(run.control()["stopped_at"]))
    assert any(f"Your lecturer stopped this run at {when}." in i.value for i in at.info), [i.value for i in at.info]
    # A student's own stop says nothing about the lecturer.
    own = Run.create(TrainConfig(), room, owner=owner_of("cy-browser"), name="cy own")
    monkeypatch.setattr(session, "owner", lambda: owner_of("cy-browser"))
    app_runs.stop(own.info())
    assert app_runs.stopped_by_lecturer(own.info()) is None
