"""Settings changed while a run trains, and steps taken by hand while it is paused: in the trainer,
through a run folder's control file, across a resume, and from `lenet set`."""
import json
import threading
import time

import pytest
import torch

from lenet_core import cli
from lenet_core.data import load_dataset
from lenet_core.model import ModelConfig
from lenet_core.runs import Run, describe_changes
from lenet_core.train import Callback, Control, TrainConfig, Trainer, build_model
from lenet_core.worker import FolderControl, train_run
from waiting import wait_for

SMALL = ModelConfig(activation="relu", pooling="max", conv_channels=(4, 8), dense_widths=(32,))


@pytest.fixture(scope="module")
def data_dir(tiny_data_dir):
    return tiny_data_dir  # conftest's small stand-ins of both data sets


@pytest.fixture(scope="module")
def tiny(data_dir):
    return load_dataset("mnist", data_dir, download=False)


def cfg(**kw):
    return TrainConfig(**{**dict(model=SMALL, dataset="mnist", lr=0.05, batch_size=32, epochs=2,
                                 optimizer="momentum", seed=3, device="cpu"), **kw})


class Optimizer(Callback):
    """The optimizer's settings each step is taken with (read after backward, before the step)."""

    def __init__(self, at_step=None):
        self.lr, self.momentum, self.at_step, self.changes = {}, {}, at_step or {}, []

    def on_fit_start(self, trainer, state):
        self.trainer = trainer

    def on_after_backward(self, model, step):
        group = self.trainer.optimizer.param_groups[0]
        self.lr[step], self.momentum[step] = group["lr"], group["momentum"]
        if step in self.at_step:  # asked for during this step: it must apply from the next one
            self.trainer.control.set(**self.at_step[step])

    def on_setting_change(self, change, state):
        self.changes.append(change)


def test_a_change_reaches_the_optimizer_at_the_step_after_it_was_asked(tiny):
    seen = Optimizer(at_step={5: {"lr": 0.02}, 11: {"momentum": 0.5, "lr": 0.02}})
    result = Trainer(cfg(), [seen], Control()).fit(build_model(cfg()), tiny)
    assert result.status == "finished" and len(seen.lr) == 16
    assert [seen.lr[s] for s in range(1, 17)] == [0.05] * 5 + [0.02] * 11
    assert [seen.momentum[s] for s in range(1, 17)] == [0.9] * 11 + [0.5] * 5
    expected = [{"step": 6, "setting": "lr", "old": 0.05, "value": 0.02},
                {"step": 12, "setting": "momentum", "old": 0.9, "value": 0.5}]
    assert seen.changes == expected and result.state.changes == expected
    assert describe_changes(expected[:1]) == "lr 0.05 -> 0.02 at step 6"


def test_a_value_a_run_cannot_take_is_ignored_by_the_trainer(tiny):
    seen = Optimizer(at_step={2: {"lr": 50.0, "momentum": "fast", "weight_decay": 0.1}})
    result = Trainer(cfg(epochs=1), [seen], Control()).fit(build_model(cfg()), tiny)
    assert set(seen.lr.values()) == {0.05} and set(seen.momentum.values()) == {0.9} and result.state.changes == []


def test_resume_keeps_the_changed_value(tiny):
    seen = Optimizer(at_step={3: {"lr": 0.2}})
    model = build_model(cfg())
    first = Trainer(cfg(epochs=1), [seen], Control()).fit(model, tiny)
    later = Optimizer()
    rest = Trainer(cfg(epochs=2), [later], Control()).fit(model, tiny, first.state)  # no change asked any more
    assert set(later.lr.values()) == {0.2} and sorted(later.lr) == list(range(9, 17))
    assert rest.state.changes == [{"step": 4, "setting": "lr", "old": 0.05, "value": 0.2}]


class Scripted(Control):
    """Paused from the start; each wait hands out the next request by hand; stops when they run out."""

    def __init__(self, *grants):
        super().__init__()
        self.grants, self.pauses = list(grants), 0
        self.pause()

    def wait_while_paused(self):
        self.pauses += 1
        if self.grants:
            return self.grants.pop(0)
        self.stop()
        return None


class Saved(Callback):
    def __init__(self):
        self.saved, self.steps = [], []

    def on_steps(self, first_step, losses, epoch):
        self.steps += range(first_step, first_step + len(losses))

    def on_hand_steps(self, state, model):
        self.saved.append((state.step, state.batch, {k: v.clone() for k, v in model.state_dict().items()}))


def test_one_step_by_hand_is_exactly_one_optimizer_step(tiny):
    config = cfg()
    model, start = build_model(config), build_model(config).state_dict()
    saved = Saved()
    result = Trainer(config, [saved], Scripted(1)).fit(model, tiny)
    assert result.status == "stopped" and result.state.step == 1 and saved.steps == [1]
    assert [(s, b) for s, b, _ in saved.saved] == [(1, 1)]

    class StopAfterOne(Callback):  # the reference: the same run, not paused, stopped after its first step
        def on_steps(self, first_step, losses, epoch):
            control.stop()

    control = Control()
    reference = build_model(config)
    Trainer(config, [StopAfterOne()], control).fit(reference, tiny)
    changed = False
    for name, value in model.state_dict().items():
        assert torch.equal(value, reference.state_dict()[name]), name
        assert torch.equal(saved.saved[0][2][name], value)
        changed |= not torch.equal(value, start[name])
    assert changed


def test_steps_by_hand_then_to_the_end_of_the_epoch(tiny):
    saved = Saved()
    epochs = []

    class Epochs(Callback):
        def on_epoch_end(self, metrics, state, model):
            epochs.append((metrics.epoch, state.step))

    control = Scripted(2, "epoch", 1)
    result = Trainer(cfg(), [saved, Epochs()], control).fit(build_model(cfg()), tiny)
    # 8 steps an epoch: 2 by hand, then the 6 left of epoch 1 (evaluated), then the first of epoch 2
    assert saved.steps == list(range(1, 10)) and epochs == [(1, 8)]
    assert [(s, b) for s, b, _ in saved.saved] == [(2, 2), (9, 1)]
    assert result.status == "stopped" and control.pauses == 4


def test_folder_control_reads_settings_and_steps_by_hand_once(tmp_path):
    run = Run.create(cfg(), tmp_path)
    run.request(pause=True, advance={"id": "old", "steps": 5})  # left by a trainer that is gone
    control = FolderControl(run, poll_s=0.0)
    assert control.paused() and control._steps_by_hand() is None
    run.request(settings={"lr": 0.3}, advance={"id": "a", "steps": 1})
    assert control.settings() == {"lr": 0.3} and control.wait_while_paused() == 1
    run.request(advance={"id": "b", "steps": "epoch"})
    assert control.wait_while_paused() == "epoch"
    run.request(advance={"id": "c", "steps": -3})  # damaged: never taken
    threading.Timer(0.3, lambda: run.request(pause=False)).start()
    assert control.wait_while_paused() is None


def test_a_run_folder_records_changes_and_keeps_them_across_a_resume(tmp_path, data_dir, capsys):
    run = Run.create(cfg(epochs=3), tmp_path)
    run.request(pause=True)
    seen = Optimizer()
    thread = threading.Thread(target=train_run, args=(run.path,), kwargs=dict(data_dir=data_dir, callbacks=[seen]))
    thread.start()
    try:
        wait_for(lambda: run.status().get("status") == "paused")
        run.step_by_hand(1)
        wait_for(lambda: run.status().get("steps_done") == 1)
        wait_for(lambda: run.has_checkpoint() and run.load_checkpoint().training.step == 1)
        assert cli.main(["set", str(run.path), "--lr", "0.02"]) == 0
        assert "from its next step" in capsys.readouterr().out
        run.step_by_hand(2)
        wait_for(lambda: run.status().get("steps_done") == 3)
        run.request(stop=True)
    finally:
        run.request(stop=True)
        thread.join(30)
    assert [seen.lr[s] for s in (1, 2, 3)] == [0.05, 0.02, 0.02]
    change = {"step": 2, "setting": "lr", "old": 0.05, "value": 0.02}
    info = run.info()
    assert info.status == "stopped" and info.changes == [change] and run.live()["changes"] == [change]
    assert run.load_checkpoint().training.changes == [change]

    run.requeue()  # Resume: the control file's settings are dropped; the checkpoint's optimizer keeps 0.02
    later = Optimizer()
    assert train_run(run.path, data_dir=data_dir, callbacks=[later]) == "finished"
    assert set(later.lr.values()) == {0.02} and min(later.lr) == 4
    assert run.info().changes == [change]
    assert cli.main(["runs", "--root", str(tmp_path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert listed[0]["changes"] == [change]


def test_lenet_train_json_lists_the_changes(tmp_path, data_dir, capsys):
    class Raise(Callback):  # what `lenet set` does, from inside, at step 3
        def on_steps(self, first_step, losses, epoch):
            if first_step == 3:
                Run(tmp_path / "r").change_settings(lr=0.2)
                time.sleep(0.3)  # past the worker's control-file poll (0.1 s): step 4 is the first to see it

    import lenet_core.cli as c
    original = c.ConsoleProgress
    c.ConsoleProgress = lambda: Raise()
    try:
        code = cli.main(["train", "--out", str(tmp_path / "r"), "--dataset", "mnist", "--data-dir", str(data_dir),
                         "--epochs", "1", "--batch-size", "64", "--preset", "modern", "--conv-channels", "4,8",
                         "--dense-widths", "16", "--device", "cpu", "--json"])
    finally:
        c.ConsoleProgress = original
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["changes"] == [{"step": 4, "setting": "lr", "old": 0.1, "value": 0.2}]


def test_lenet_set_refuses_bad_input_with_one_line(tmp_path, capsys):
    def refused(*argv):
        assert cli.main(["set", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ")
        return err[0]

    live = Run.create(cfg(), tmp_path)
    assert "not a run folder" in refused(str(tmp_path / "nothing"), "--lr", "0.5")
    assert "give a setting" in refused(str(live.path))
    assert "must be 1e-05 to 10, got 20" in refused(str(live.path), "--lr", "20")
    assert "momentum" in refused(str(Run.create(cfg(optimizer="sgd"), tmp_path).path), "--momentum", "0.5")
    assert "must be 0 to 0.99" in refused(str(live.path), "--momentum", "1.5")
    assert "belongs to a browser" in refused(str(Run.create(cfg(), tmp_path, owner="b1", owner_name="Ada").path),
                                            "--lr", "0.5")
    done = Run.create(cfg(), tmp_path)
    done.set_status("finished", "Finished 2 epochs.")
    assert "ended (finished)" in refused(str(done.path), "--lr", "0.5")
    assert "invalid float" in refused(str(live.path), "--lr", "fast")
    assert "settings" not in live.control()  # nothing refused reached the run
    assert cli.main(["set", live.id, "--lr", "0.5"]) == 2  # an id under another root is not found
    capsys.readouterr()
    assert cli.main(["set", str(live.path), "--lr", "0.5", "--momentum", "0.8"]) == 0
    assert live.control()["settings"] == {"lr": 0.5, "momentum": 0.8}


def test_a_scenario_may_plan_a_change_by_hand_within_its_bounds():
    from lenet_core.scenarios import DEFAULT_DIR, load_scenarios, parse

    s = parse('preset = "classic"\nlr = 0.1\n[live]\nlr = 0.9\nwhen = "once it sits at chance"\n', "k")
    assert s.config.lr == 0.1 and s.live == {"lr": 0.9, "when": "once it sits at chance"}
    assert parse('lr = 0.3\n', "k").live == {}
    for bad, said in (('[live]\nlr = 50\nwhen = "now"\n', "must be 1e-05 to 10"),
                      ('[live]\nmomentum = 0.5\nwhen = "now"\n', "momentum: cannot change"),
                      ('[live]\nwhen = "now"\n', "needs a setting"), ('live = 3\n', "must be a table")):
        with pytest.raises(ValueError, match=said):
            parse(bad, "k")
    found, problems = load_scenarios(DEFAULT_DIR)
    (ex1,) = [s for s in found if s.live]
    assert problems == [] and ex1.config.lr == 0.1 and ex1.config.model.activation == "sigmoid"
    assert ex1.live["lr"] == 0.9
