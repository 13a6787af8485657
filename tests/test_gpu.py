"""The GPU path, where there is one (benchmarks/gpu_check.sh runs these with `-m gpu`; the normal
suite deselects them, and the same logic is tested on the CPU by test_train and test_pool):
training on the device, the loss read back every k steps, pause and stop within a second,
several runs sharing the device through the pool, a checkpoint trained there loading here."""
import os
import threading
import time

import pytest
import torch

from lenet_core.checkpoint import load_checkpoint
from lenet_core.executors import LocalPool
from lenet_core.model import preset
from lenet_core.runs import Run
from lenet_core.train import Callback, Control, TrainConfig, Trainer, build_model
from lenet_core.worker import dataset
from synthetic import synthetic_idx

pytestmark = pytest.mark.gpu
DEVICE = os.environ.get("LENET_TEST_DEVICE", "cuda")  # gpu_check.sh's dry run sets cpu


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    if DEVICE == "cuda":
        assert torch.cuda.is_available(), "these tests need a CUDA GPU (or LENET_TEST_DEVICE=cpu)"
    root = tmp_path_factory.mktemp("data")
    synthetic_idx(root / "mnist", n_train=2048, n_test=256)
    return root


def config(**kw):
    return TrainConfig(**{"model": preset("modern"), "dataset": "mnist", "batch_size": 32, "epochs": 2, "lr": 0.05,
                          "optimizer": "momentum", "device": DEVICE, **kw})


def test_training_on_the_device_learns_and_reads_losses_every_25_steps(data_dir):
    blocks = []

    class Blocks(Callback):
        def on_steps(self, first_step, losses, epoch):
            blocks.append(len(losses))

    data = dataset("mnist", data_dir)
    trainer = Trainer(config(), [Blocks()])
    assert trainer.sync_every == (25 if DEVICE == "cuda" else 1)
    result = trainer.fit(build_model(config()), data)
    assert result.status == "finished" and result.final["accuracy"] > 0.5
    assert sum(blocks) == 2 * 64 and max(blocks) == trainer.sync_every
    assert next(build_model(config()).parameters()).device.type == "cpu"  # models are built on the CPU


def test_pause_and_stop_act_within_a_second_on_the_device(data_dir):
    control, steps = Control(), []

    class Count(Callback):
        def on_steps(self, first_step, losses, epoch):
            steps.append(first_step + len(losses) - 1)

    cfg = config(epochs=200, batch_size=8)
    thread = threading.Thread(target=Trainer(cfg, [Count()], control).fit, args=(build_model(cfg), dataset("mnist", data_dir)))
    thread.start()
    try:
        while not steps:
            time.sleep(0.01)
        control.pause()
        time.sleep(1.0)
        held = steps[-1]
        time.sleep(1.0)
        assert steps[-1] == held
        control.resume()
        t0 = time.monotonic()
        control.stop()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - t0 < 1.0
    finally:
        control.stop()
        thread.join(5)


def test_runs_share_the_device_through_the_pool_and_load_on_the_cpu(data_dir, tmp_path):
    pool = LocalPool(per_device=3, data_dir=data_dir, devices=["cuda:0" if DEVICE == "cuda" else "cpu"])
    try:
        runs = [Run.create(config(seed=i, device="auto"), tmp_path) for i in range(3)]
        for run in runs:
            pool.submit(run)
        deadline = time.monotonic() + 240
        while any(r.info().live for r in runs) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        pool.shutdown()
    infos = [r.info() for r in runs]
    assert [i.status for i in infos] == ["finished"] * 3
    assert all(i.device.startswith("GPU" if DEVICE == "cuda" else "CPU") for i in infos), [i.device for i in infos]
    started = sorted(i.started for i in infos)
    assert started[-1] < min(i.ended for i in infos)  # the three trained at the same time
    ckpt = load_checkpoint(runs[0].path / "checkpoint.pt")
    assert next(ckpt.model.parameters()).device.type == "cpu"
