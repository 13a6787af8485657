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

from lenet_core.checkpoint import (Checkpoint, CheckpointError, checkpoint_bytes, list_runs, load_checkpoint,
                                   load_run, save_checkpoint, save_run)
from lenet_core.model import preset
from lenet_core.train import EpochMetrics, TrainConfig, build_model


def make_ckpt(seed=0):
    config = TrainConfig(model=preset("modern").replace(kernel_size=3, dense_widths=(50,)), dataset="mnist", seed=seed)
    epochs = [EpochMetrics(1, 0.9, 0.7, 0.8, 0.75, 1234.0, 2.5)]
    return Checkpoint(config, build_model(config), "mnist", tuple("0123456789"),
                      {"test_accuracy": 0.75}, epochs, [(1, 2.3), (2, 2.1)])


def test_round_trip_rebuilds_the_same_model(tmp_path):
    ckpt = make_ckpt()
    path = save_checkpoint(tmp_path / "m.pt", ckpt)
    loaded = load_checkpoint(path)
    assert loaded.config == ckpt.config and loaded.classes == ckpt.classes and loaded.dataset == "mnist"
    assert loaded.metrics == {"test_accuracy": 0.75} and loaded.epochs == ckpt.epochs and loaded.steps == ckpt.steps
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
            save_run(tmp_path / "run", make_ckpt())
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


def test_run_directories_list_and_reload(tmp_path):
    save_run(tmp_path / "a", make_ckpt(1))
    save_run(tmp_path / "b", make_ckpt(2), status="stopped")
    (tmp_path / "junk").mkdir()
    runs = list_runs(tmp_path)
    assert {r.path.name for r in runs} == {"a", "b"}
    b = next(r for r in runs if r.path.name == "b")
    assert b.status == "stopped" and b.config.seed == 2 and b.final == {"test_accuracy": 0.75}
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["steps"] == [[1, 2.3], [2, 2.1]] and metrics["epochs"][0]["val_acc"] == 0.75
    assert load_run(tmp_path / "a").config.seed == 1
    os.utime(tmp_path / "a", (1, 1))  # "a" the oldest folder, junk (skipped) the newest: the limit counts runs
    assert [r.path.name for r in list_runs(tmp_path, limit=1)] == ["b"]
    assert len(list_runs(tmp_path, limit=2)) == 2


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
