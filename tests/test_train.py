"""The trainer against a plain reference loop, and the background job's controls."""
import math
import time

import pytest
import torch
import torch.nn.functional as F

from lenet_core.data import load_dataset, synthetic_idx
from lenet_core.model import ModelConfig, plain_torch, preset
from lenet_core.train import Callback, Trainer, TrainConfig, TrainingJob, as_input, build_model, evaluate

SMALL = ModelConfig(activation="relu", pooling="max", conv_channels=(4, 8), dense_widths=(32,))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    synthetic_idx(root / "mnist", n_train=512, n_test=256)
    return load_dataset("mnist", root, download=False)


def cfg(**kw):
    base = dict(model=SMALL, dataset="mnist", lr=0.05, batch_size=32, epochs=2, optimizer="momentum",
                seed=3, device="cpu")
    return TrainConfig(**{**base, **kw})


def test_training_lowers_the_loss_and_beats_chance(tiny):
    config = cfg(epochs=3)
    model = build_model(config)
    before = evaluate(model, tiny.test_images, tiny.test_labels)
    result = Trainer(config).fit(model, tiny)
    after = evaluate(model, tiny.test_images, tiny.test_labels)
    assert result.status == "finished" and len(result.epochs) == 3
    assert after["loss"] < 0.5 * before["loss"]
    assert after["accuracy"] > 0.5  # chance is 0.1
    assert result.epochs[-1].val_acc == pytest.approx(after["accuracy"])
    assert len(result.steps) == 3 * math.ceil(512 / 32)


@pytest.mark.parametrize("model", [SMALL, ModelConfig(conv_channels=(4, 8), dense_widths=(32,))],
                         ids=["relu-max", "sigmoid-avg"])
def test_matches_a_plain_reference_loop(tiny, model):
    """Same seed, same batches, same maths: the engine's per-step losses equal a textbook loop's
    on the same network made of torch.nn's own modules in NCHW (so none of the engine's fast
    paths: they change no result)."""
    config = cfg(model=model, epochs=1, optimizer="sgd", lr=0.1)
    engine = Trainer(config).fit(build_model(config), tiny)

    model = plain_torch(build_model(config))
    opt = torch.optim.SGD(model.parameters(), lr=config.lr)
    perm = torch.randperm(512, generator=torch.Generator().manual_seed(config.seed))
    reference = []
    for i in range(0, 512, config.batch_size):
        idx = perm[i:i + config.batch_size]
        loss = F.cross_entropy(model(as_input(tiny.train_images[idx])), tiny.train_labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        reference.append(loss.item())
    assert [v for _, v in engine.steps] == pytest.approx(reference, rel=1e-4, abs=1e-5)


def test_same_seed_same_metrics_on_cpu(tiny):
    a = Trainer(cfg()).fit(build_model(cfg()), tiny)
    b = Trainer(cfg()).fit(build_model(cfg()), tiny)
    c = Trainer(cfg(seed=4)).fit(build_model(cfg(seed=4)), tiny)
    strip = lambda r: [(m.train_loss, m.train_acc, m.val_loss, m.val_acc) for m in r.epochs]
    assert a.steps == b.steps and strip(a) == strip(b)
    assert a.steps != c.steps


def test_callbacks_report_steps_and_epochs(tiny):
    seen = {"steps": [], "epochs": [], "start": None, "end": None}

    class Recorder(Callback):
        def on_fit_start(self, trainer, total):
            seen["start"] = total

        def on_step(self, e):
            seen["steps"].append((e.step, e.epoch, e.batch, e.batches))

        def on_epoch_end(self, m):
            seen["epochs"].append(m)

        def on_fit_end(self, r):
            seen["end"] = r.status

    Trainer(cfg(), [Recorder()]).fit(build_model(cfg()), tiny)
    assert seen["start"] == 32 and len(seen["steps"]) == 32 and seen["end"] == "finished"
    assert seen["steps"][0] == (1, 1, 1, 16) and seen["steps"][-1] == (32, 2, 16, 16)
    m = seen["epochs"][-1]
    assert m.epoch == 2 and m.samples_per_s > 0 and m.epoch_time > 0 and 0 <= m.val_acc <= 1


def test_diverged_run_ends_with_advice(tiny):
    config = cfg(lr=1e3, optimizer="sgd", model=preset("modern"))
    result = Trainer(config).fit(build_model(config), tiny)
    assert result.status == "diverged"
    assert "lower learning rate" in result.message and "e.g. 100," in result.message
    assert all(math.isfinite(v) for _, v in result.steps)  # only finite losses are reported


def wait_for(predicate, timeout=20.0):
    t0 = time.perf_counter()
    while not predicate():
        if time.perf_counter() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_job_pause_resume_stop(tiny):
    job = TrainingJob(cfg(epochs=1000, batch_size=8), data=tiny).start()
    try:
        wait_for(lambda: job.snapshot().step > 5)
        job.pause()
        time.sleep(0.2)
        paused_at = job.snapshot().step
        time.sleep(0.4)
        snap = job.snapshot()
        assert snap.status == "paused" and snap.step == paused_at
        job.resume()
        wait_for(lambda: job.snapshot().step > paused_at + 5)
        assert job.snapshot().status == "running"
        t0 = time.perf_counter()
        job.stop()
        assert job.join(1.0), "stop took more than a second"
        stop_s = time.perf_counter() - t0
    finally:
        job.stop()
        job.join(5)
    snap = job.snapshot()
    assert snap.status == "stopped" and snap.done and stop_s < 1.0
    assert "Stopped" in snap.message
    out = job.model(as_input(tiny.test_images[:4]))  # the model is still usable
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_stop_while_paused(tiny):
    job = TrainingJob(cfg(epochs=1000, batch_size=8), data=tiny).start()
    wait_for(lambda: job.snapshot().step > 2)
    job.pause()
    job.stop()
    assert job.join(1.0)
    assert job.snapshot().status == "stopped"


def test_job_snapshot_is_consistent_and_finishes(tiny):
    job = TrainingJob(cfg(epochs=2), data=tiny).start()
    snaps = []
    while job.alive:
        snaps.append(job.snapshot())
        time.sleep(0.01)
    job.join()
    final = job.snapshot()
    assert final.status == "finished" and final.step == final.total_steps == 32
    assert len(final.epochs) == 2 and len(final.steps) == 32 and final.progress == 1.0
    for s in snaps:  # never a torn read: as many losses as steps taken
        assert len(s.steps) == s.step and len(s.epochs) <= 2


def test_job_reports_missing_data_as_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("LENET_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LENET_OFFLINE", "1")
    job = TrainingJob(cfg(), data_dir=tmp_path / "nothing").start()
    job.join(10)
    snap = job.snapshot()
    assert snap.status == "failed" and "LENET_DATA_DIR" in snap.message


def test_config_round_trip_and_validation():
    c = cfg(model=preset("modern"), optimizer="adam", lr=1e-3)
    assert TrainConfig.from_dict(c.to_dict()) == c
    for bad in (dict(lr=0), dict(lr=float("nan")), dict(batch_size=0), dict(epochs=0), dict(optimizer="rmsprop"),
                dict(dataset="cifar"), dict(device="tpu")):
        with pytest.raises(ValueError):
            cfg(**bad).validate()


def test_evaluate_can_keep_each_prediction(tiny):
    model = build_model(cfg())
    result = evaluate(model, tiny.test_images, tiny.test_labels, batch_size=100, keep_predictions=True)
    probs = torch.softmax(model(as_input(tiny.test_images)), 1)
    assert torch.equal(result["predictions"], probs.argmax(1))
    assert torch.allclose(result["confidence"], probs.max(1).values, atol=1e-6)
    assert result["accuracy"] == pytest.approx((result["predictions"] == tiny.test_labels).float().mean().item())
    assert "predictions" not in evaluate(model, tiny.test_images, tiny.test_labels)


def test_device_label_names_the_cpu_threads():
    from lenet_core.train import device_label

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert device_label("cpu") == "CPU (1 thread)"
        torch.set_num_threads(2)
        assert device_label("cpu") == "CPU (2 threads)"
    finally:
        torch.set_num_threads(before)


def test_an_interpreter_that_exits_mid_run_stops_the_job_cleanly(tiny_data_dir):
    """A script (or a Streamlit server) that exits while a job trains ends with code 0:
    the job's daemon thread left in torch's code used to abort the process (code 134)."""
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import time\n"
        "from lenet_core.data import load_dataset\n"
        "from lenet_core.train import TrainConfig, TrainingJob\n"
        f"data = load_dataset('mnist', {str(tiny_data_dir)!r}, download=False)\n"
        "job = TrainingJob(TrainConfig(dataset='mnist', epochs=200, batch_size=16, device='cpu'), data=data)\n"
        "job.start()\n"
        "while job.snapshot().step < 5: time.sleep(0.01)\n"
        "print(job.snapshot().status, flush=True)\n")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "running"  # it did exit while the job trained
    assert done.returncode == 0, done.stderr[-2000:]
    assert "terminate called" not in done.stderr


def test_cpu_training_keeps_freed_tensor_memory_for_reuse(tiny):
    """After a CPU trainer is made, a freed 20 MB tensor stays in malloc's heap for the next one
    instead of going back to the system (glibc), so steps stop faulting in fresh pages."""
    import ctypes
    import platform

    from lenet_core import train

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    Trainer(cfg())
    assert train.keep_freed_memory() is True

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    big = torch.empty(5 << 20)  # 20 MB: mmap'd by default, from the heap once tuned
    mmapped = libc.mallinfo2().hblkhd
    del big
    info = libc.mallinfo2()
    assert info.hblkhd == mmapped          # it was not an mmap'd block...
    assert info.fordblks >= 20 << 20       # ...and its memory is kept, free, in the heap
