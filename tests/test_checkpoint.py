"""Checkpoints rebuild their model, refuse anything that is not one, and never run code."""
import io
import json
import os
import pickle
import random
import re
import zipfile

import pytest
import torch

from lenet_core.checkpoint import Checkpoint, CheckpointError, checkpoint_bytes, load_checkpoint, save_checkpoint
from lenet_core.data import FASHION_CLASSES
from lenet_core.model import preset
from lenet_core.runs import Run
from lenet_core.train import EpochMetrics, TrainConfig, TrainState, build_model


def make_ckpt(seed=0):
    config = TrainConfig(model=preset("modern").replace(kernel_size=3, dense_widths=(50,)), dataset="mnist", seed=seed)
    epochs = [EpochMetrics(1, 0.9, 0.7, 0.8, 0.75, 1234.0, 2.5)]
    return Checkpoint(config, build_model(config), "mnist", tuple("0123456789"),
                      {"test_accuracy": 0.75}, epochs, torch.tensor([[1, 2.3], [2, 2.1]], dtype=torch.float64))


def test_round_trip_rebuilds_the_same_model(tmp_path):
    ckpt = make_ckpt()
    path = save_checkpoint(tmp_path / "m.pt", ckpt)
    loaded = load_checkpoint(path)
    assert loaded.config == ckpt.config and loaded.classes == ckpt.classes and loaded.dataset == "mnist"
    assert loaded.metrics == {"test_accuracy": 0.75} and loaded.epochs == ckpt.epochs
    assert torch.equal(loaded.steps, ckpt.steps) and loaded.training is None
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(loaded.model(x), ckpt.model.eval()(x))
    assert not loaded.model.training
    assert load_checkpoint(checkpoint_bytes(ckpt)).config == ckpt.config  # from bytes (uploads)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_saved_files_follow_the_umask_and_leave_it_alone(tmp_path, monkeypatch, umask, mode):
    # The umask is process-wide: setting it, even for a moment, would affect files other
    # threads create meanwhile. Saving must let the kernel apply it instead.
    previous = os.umask(umask)
    try:
        with monkeypatch.context() as m:
            m.setattr(os, "umask", lambda *a: pytest.fail("saving must not touch the umask"))
            path = save_checkpoint(tmp_path / "m.pt", make_ckpt())
            run = Run.create(make_ckpt().config, path=tmp_path / "run")
            run.save_checkpoint(make_ckpt())
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == mode
    assert {f.stat().st_mode & 0o777 for f in (tmp_path / "run").iterdir()} == {mode}
    assert not [f for f in tmp_path.rglob("*.tmp")]


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EXPLOIT_SENTINEL']}",))


def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path, monkeypatch):
    sentinel = tmp_path / "pwned"
    monkeypatch.setenv("EXPLOIT_SENTINEL", str(sentinel))
    bad = tmp_path / "evil.pt"
    torch.save({"format": "lenet-lab/checkpoint", "payload": Exploit()}, bad)
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps(Exploit()))
    for path, why in ((bad, r"Python objects \(posix.system\)"), (plain, "plain Python pickle")):
        with pytest.raises(CheckpointError, match="not a LeNet Lab checkpoint") as refused:
            load_checkpoint(path)
        assert re.search(why, str(refused.value)) and "nothing in it was run" in str(refused.value)
    assert not sentinel.exists()


def _zip_of_text() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes.txt", "not a checkpoint")
    return buf.getvalue()


@pytest.mark.parametrize("content, why", [
    (b"\x01" + random.Random(0).randbytes(2047), "not a file written by torch.save"),
    (b"", "the file is empty"),
    (b"hello", "not a file written by torch.save"),
    (json.dumps({"a": 1}).encode(), "not a file written by torch.save"),
    (_zip_of_text(), "zip archive but not one written by torch.save")])
def test_garbage_is_refused_saying_what_it_is(tmp_path, content, why):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    for source in (path, content):  # a path, and the bytes of an upload
        with pytest.raises(CheckpointError, match=why):
            load_checkpoint(source)


def test_other_torch_files_and_damaged_checkpoints_are_refused(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="another kind"):
        load_checkpoint(tmp_path / "other.pt")
    buf = io.BytesIO(checkpoint_bytes(make_ckpt()))
    payload = torch.load(buf, weights_only=True)
    payload["state_dict"].pop("net.output.weight")
    torch.save(payload, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_shipped_models_load_and_meet_their_bars():
    from pathlib import Path
    models = Path(__file__).resolve().parents[1] / "models"
    bars = {"digits": ("mnist", 0.97), "fashion-classic": ("fashion-mnist", 0.715), "fashion-modern": ("fashion-mnist", 0.875)}
    for name, (dataset, bar) in bars.items():
        path = models / name / "checkpoint.pt"
        assert path.stat().st_size < 1_000_000
        ckpt = load_checkpoint(path)
        assert ckpt.dataset == dataset and len(ckpt.classes) == 10
        assert ckpt.metrics["test_accuracy"] >= bar
    assert load_checkpoint(models / "fashion-classic" / "checkpoint.pt").config.model == preset("classic")


def test_the_training_state_travels_only_where_asked(tmp_path):
    ckpt = make_ckpt()
    ckpt.training = TrainState(epoch=3, step=120, batch=5, sums=(1.5, 7, 40), seconds=2.0,
                               shuffle=torch.Generator().manual_seed(1).get_state(), optimizer={"state": {}})
    assert load_checkpoint(checkpoint_bytes(ckpt)).training is None  # a download: weights, settings, curves
    state = load_checkpoint(checkpoint_bytes(ckpt, with_training=True)).training
    assert (state.epoch, state.step, state.batch, state.sums) == (3, 120, 5, (1.5, 7, 40))
    assert torch.equal(state.shuffle, ckpt.training.shuffle)


def payload_of(ckpt=None) -> dict:
    return torch.load(io.BytesIO(checkpoint_bytes(ckpt or make_ckpt())), weights_only=True)


def refused(payload, tmp_path) -> str:
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    return str(info.value)


@pytest.mark.parametrize("change, says", [
    (lambda p: p["config"]["model"].update(dense_widths=[2_000_000]), "1 to 1,024"),
    (lambda p: p["config"]["model"].update(conv_channels=[6, 16, 32, 64]), "1 to 3 entries"),
    (lambda p: p["config"]["model"].update(num_classes=1000), "1000"),
    (lambda p: p["config"]["model"].update(image_size=224), "224"),
    (lambda p: p["config"].update(lr="fast"), "must be a number"),
    (lambda p: p["config"].update(epochs=1e9), "1 to 200"),
    (lambda p: p["config"].update(dataset="imagenet"), "imagenet"),
    (lambda p: p.update(dataset="imagenet"), "data set 'imagenet'"),
    (lambda p: p.update(classes=["<img src=x onerror=alert(1)>"] + list("123456789")), "class names"),
    (lambda p: p.update(classes=["0"]), "class names"),
    (lambda p: p["metrics"].update(test_accuracy="97%"), "test_accuracy"),
    (lambda p: p["metrics"].update(test_accuracy=3.5), "test_accuracy"),
    (lambda p: p.update(epochs=[{"epoch": "one"}]), "epoch"),
    (lambda p: p.update(steps=[[1, "x"]]), "loss per step"),
    (lambda p: p["state_dict"].update({"net.output.weight": torch.zeros(3, 3)}), "net.output.weight"),
    (lambda p: p["state_dict"]["net.conv1.weight"].fill_(float("nan")), "NaN"),
    (lambda p: p.update(version="2"), "version"),
    (lambda p: p.update(config=["classic"]), "settings"),
])
def test_every_field_is_checked_and_a_bad_one_refused_with_its_reason(tmp_path, change, says):
    payload = payload_of()
    change(payload)
    message = refused(payload, tmp_path)
    assert says in message, message
    assert "Traceback" not in message


def test_oversized_settings_are_refused_before_any_model_is_built(tmp_path, monkeypatch):
    """A 0.5 MB file whose settings ask for a dense layer of two million units once took a server
    to 8 GB before it was refused: now no model is built for settings outside the bounds."""
    import lenet_core.model as m

    payload = payload_of()
    payload["config"]["model"]["dense_widths"] = [2_000_000, 2_000_000]
    monkeypatch.setattr(m.LeNet, "__init__", lambda *a: pytest.fail("a model was built"))
    assert "Dense widths" in refused(payload, tmp_path)


def test_a_file_too_large_to_be_a_checkpoint_is_not_read(tmp_path, monkeypatch):
    import lenet_core.checkpoint as c

    monkeypatch.setattr(c, "MAX_BYTES", 1000)
    monkeypatch.setattr(c.torch, "load", lambda *a, **k: pytest.fail("the file was unpickled"))
    (tmp_path / "big.pt").write_bytes(b"\0" * 2000)
    for source in (tmp_path / "big.pt", b"\0" * 2000):
        with pytest.raises(CheckpointError, match="at most"):
            load_checkpoint(source)


def test_fashion_checkpoints_need_fashion_class_names(tmp_path):
    config = TrainConfig(dataset="fashion-mnist")
    ckpt = Checkpoint(config, build_model(config), "fashion-mnist", FASHION_CLASSES)
    assert load_checkpoint(checkpoint_bytes(ckpt)).classes == FASHION_CLASSES
    payload = payload_of(ckpt)
    payload["classes"] = list("0123456789")
    assert "class names" in refused(payload, tmp_path)
