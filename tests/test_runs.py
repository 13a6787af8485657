"""Run folders: written from the first moment, read back the same by anyone, old ones still loaded."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from lenet_core.checkpoint import Checkpoint
from lenet_core.model import preset
from lenet_core.processes import process_alive, this_process
from lenet_core.runs import Run, describe, list_runs, queue
from lenet_core.train import EpochMetrics, TrainConfig, build_model
from lenet_core.loss_curve import LossCurve
from lenet_core.worker import train_run
from synthetic import synthetic_idx

SMALL = preset("modern").replace(conv_channels=(4, 8), dense_widths=(32,))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    synthetic_idx(root / "mnist", n_train=256, n_test=128)
    return root


def config(**kw):
    return TrainConfig(**{"model": SMALL, "dataset": "mnist", "lr": 0.05, "batch_size": 32, "epochs": 2,
                          "optimizer": "momentum", "device": "cpu", **kw})


def test_a_run_is_a_folder_from_the_moment_it_is_asked_for(tmp_path):
    run = Run.create(config(), tmp_path, owner="abc", owner_name="Ada")
    assert {p.name for p in run.path.iterdir()} == {"config.json", "run.json", "status.json"}
    info = run.info()
    assert info.status == "queued" and info.owner == "abc" and info.owner_name == "Ada" and info.live
    assert info.config == config() and info.name == describe(config())
    assert [i.path for i in list_runs(tmp_path)] == [run.path]


def test_a_trained_folder_reads_back_steps_epochs_and_checkpoint(tmp_path, data_dir):
    run = Run.create(config(), tmp_path)
    assert train_run(run.path, data_dir=data_dir) == "finished"
    info = run.info()
    assert info.status == "finished" and info.epochs_done == 2 and info.steps_done == 16 == info.total_steps
    assert 0 <= info.test_accuracy <= 1 and info.final["per_class_accuracy"]
    steps, losses = run.steps()
    assert steps.tolist() == list(range(1, 17)) and np.isfinite(losses).all()
    assert [m.epoch for m in run.epochs()] == [1, 2]
    ckpt = run.load_checkpoint()
    assert ckpt.training.epoch == 2 and ckpt.training.step == 16 and ckpt.metrics["test_accuracy"] == info.test_accuracy
    live = run.live()
    assert live["curve"]["step"][-1] == 16 and len(live["epochs"]) == 2
    assert not (run.path / "claim.json").exists()  # released


def test_folders_written_before_run_folders_still_load(tmp_path):
    """The layout of earlier versions (and of the models shipped then): run.json with the status and
    final figures, metrics.json with steps and epochs, a version-1 checkpoint."""
    cfg = config()
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(cfg.to_dict()))
    (old / "run.json").write_text(json.dumps({"status": "stopped", "saved_at": "2026-11-24 18:42:40",
                                              "dataset": "mnist", "classes": list("0123456789"),
                                              "final": {"test_accuracy": 0.5}}))
    epochs = [EpochMetrics(1, 2.0, 0.3, 1.9, 0.4, 100.0, 1.0).to_dict()]
    (old / "metrics.json").write_text(json.dumps({"epochs": epochs, "steps": [[1, 2.3], [2, 2.2], [3, 2.0]]}))
    payload = {"format": "lenet-lab/checkpoint", "version": 1, "config": cfg.to_dict(),
               "state_dict": build_model(cfg).state_dict(), "dataset": "mnist", "classes": list("0123456789"),
               "metrics": {"test_accuracy": 0.5, "status": "stopped"}, "epochs": epochs,
               "steps": [[1, 2.3], [2, 2.2], [3, 2.0]]}
    torch.save(payload, old / "checkpoint.pt")
    info = Run(old).info()
    assert info.legacy and info.status == "stopped" and info.test_accuracy == 0.5 and info.epochs_done == 1
    assert Run(old).steps()[0].tolist() == [1, 2, 3] and Run(old).epochs()[0].val_acc == 0.4
    assert Run(old).load_checkpoint().config == cfg
    assert [i.id for i in list_runs(tmp_path)] == ["old-run"]


def test_a_running_run_whose_trainer_died_reads_as_interrupted(tmp_path):
    run = Run.create(config(), tmp_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = {**this_process(), "pid": int(gone.stdout)}
    (run.path / "claim.json").write_text(json.dumps(dead))
    run.set_status("running", "", epochs_done=3)
    info = run.info()
    assert info.status == "interrupted" and "epoch (3) is kept" in info.message and "Resume" in info.message
    (run.path / "claim.json").write_text(json.dumps(this_process()))  # alive: this very process
    assert run.info().status == "running"
    assert process_alive(this_process()) is True and process_alive({**this_process(), "host": "elsewhere"}) is None


def test_a_run_on_another_machine_is_alive_while_it_writes(tmp_path):
    run = Run.create(config(), tmp_path)
    (run.path / "claim.json").write_text(json.dumps({"host": "gpu-node-7", "pid": 1, "start": "1"}))
    run.set_status("running", "")
    assert run.info().status == "running"
    st = json.loads((run.path / "status.json").read_text())
    st["updated"] = time.time() - 3600
    (run.path / "status.json").write_text(json.dumps(st))
    assert run.info().status == "interrupted"


def test_one_trainer_per_run(tmp_path, data_dir):
    run = Run.create(config(), tmp_path)
    assert run.claim("test")
    assert not Run(run.path).claim("other")
    assert train_run(run.path, data_dir=data_dir) == "busy" and run.info().status == "queued"
    run.release()
    dead = {**this_process(), "start": "not-this-process"}  # a claim left by a process that is gone
    (run.path / "claim.json").write_text(json.dumps(dead))
    assert run.claim("new")


def test_the_queue_is_in_the_order_runs_were_asked_for(tmp_path):
    runs = []
    for seed in range(3):
        runs.append(Run.create(config(seed=seed), tmp_path))
        time.sleep(0.01)
    runs[1].set_status("running", "")
    assert [i.path for i in queue(tmp_path)] == [runs[0].path, runs[2].path]
    assert [i.path for i in list_runs(tmp_path)] == [r.path for r in reversed(runs)]  # newest first
    assert [i.path for i in list_runs(tmp_path, owner=None)] == [r.path for r in reversed(runs)]
    assert list_runs(tmp_path, owner="someone") == []


def test_a_killed_trainers_extra_steps_are_dropped_when_it_carries_on(tmp_path, data_dir):
    run = Run.create(config(epochs=3), tmp_path)
    assert train_run(run.path, data_dir=data_dir) == "finished"
    ckpt = run.load_checkpoint()
    # As if killed in epoch 3 after epoch 2's checkpoint: the folder has steps and an epoch beyond it.
    ckpt.training = type(ckpt.training)(epoch=2, step=16, shuffle=None, optimizer=None)
    run.save_checkpoint(Checkpoint(ckpt.config, ckpt.model, ckpt.dataset, ckpt.classes, training=ckpt.training))
    run.truncate(16, 2)
    assert run.steps()[0].tolist() == list(range(1, 17)) and len(run.epochs()) == 2


def test_names_say_what_a_run_is():
    assert describe(TrainConfig()) == "classic"
    assert describe(TrainConfig(lr=0.3)) == "classic · lr 0.3"
    assert describe(TrainConfig(model=preset("modern"), optimizer="adam", lr=0.001)) == "modern · adam · lr 0.001"
    assert describe(TrainConfig(model=preset("classic").replace(kernel_size=3))) == "classic · kernel 3"
    assert describe(TrainConfig(model=preset("modern").replace(conv_channels=(6, 32)))) == "modern · conv 6,32"


def test_the_drawn_curve_stays_small_however_long_the_run():
    rng = np.random.default_rng(0)
    losses = 2.3 * np.exp(-np.arange(1, 100_001) / 20_000) + rng.normal(0, 0.05, 100_000)
    curve = LossCurve.of(np.arange(1, 100_001), losses, points=500)
    d = curve.to_dict()
    assert 250 <= len(d["step"]) <= 500 and d["step"][-1] == 100_000
    assert d["step"] == sorted(d["step"])
    # each point is the mean of its bucket: the drawn curve follows the true one
    for s, v in zip(d["step"][::50], d["loss"][::50]):
        assert abs(v - 2.3 * np.exp(-s / 20_000)) < 0.05
    assert sum(curve.counts) == 100_000


def test_control_requests_are_kept_in_the_folder(tmp_path):
    run = Run.create(config(), tmp_path)
    run.request(pause=True)
    assert Run(run.path).control()["pause"] is True
    run.request(pause=False, stop=True)
    assert Run(run.path).control() | {"updated": 0} == {"pause": False, "stop": True, "updated": 0}
    run.rename("my best run")
    assert Run(run.path).info().name == "my best run"
    assert not [p for p in run.path.iterdir() if p.suffix == ".tmp"]
    os.chmod(run.path, 0o755)


def test_the_eta_comes_from_the_average_speed_of_the_run_so_far(tmp_path):
    run = Run.create(config(), tmp_path)
    (run.path / "claim.json").write_text(json.dumps(this_process()))  # trained by this process
    run.set_status("running", steps_done=100, total_steps=1000, train_seconds=10.0, samples_per_s=50_000.0)
    assert run.info().eta_s == pytest.approx(90.0)  # 900 steps at 10 steps/s, whatever the last second's rate
    run.set_status("running", steps_done=300, train_seconds=40.0)  # a slow stretch: the average moves a little
    assert run.info().eta_s == pytest.approx(700 * 40.0 / 300)
    run.set_status("paused")
    assert run.info().eta_s is None
