"""The epoch scrubber's recording: probe images, frames, thinning, resuming, the file."""
import os
from pathlib import Path

import pytest
import torch

from lenet_core.activations import activations
from lenet_core.data import load_dataset
from synthetic import synthetic_idx
from lenet_core.model import LeNet, ModelConfig
from lenet_core.probes import (DEFAULT_BUDGET_BYTES, MIN_FRAMES, ProbeRecorder, load_probes, probe_set)
from lenet_core.train import as_input

SMALL = ModelConfig(activation="relu", conv_channels=(4, 8), dense_widths=(16,))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    synthetic_idx(root / "mnist", n_train=64, n_test=128)
    return load_dataset("mnist", root, download=False)


def model_at(epoch: int, config: ModelConfig = SMALL) -> LeNet:
    """A different model for every epoch, the same one every time for the same epoch."""
    torch.manual_seed(epoch)
    return LeNet(config)


def test_probe_set_is_the_first_two_test_images_of_each_class(tiny):
    images, labels = probe_set(tiny)
    expected = []
    for c in range(10):
        expected += [i for i, y in enumerate(tiny.test_labels.tolist()) if y == c][:2]
    assert labels.tolist() == [tiny.test_labels[i].item() for i in expected] == sorted(labels.tolist())
    assert torch.equal(images, tiny.test_images[expected])
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    again, _ = probe_set(load_dataset("mnist", Path(tiny.source).parent, download=False))
    assert torch.equal(images, again)


def test_a_frame_holds_post_activation_maps_and_filters(tiny, tmp_path):
    images, labels = probe_set(tiny)
    rec = ProbeRecorder(SMALL, images, labels)
    models = [model_at(e) for e in range(3)]
    for e, m in enumerate(models):
        rec.record(e, m)
    probes = load_probes(rec.save(tmp_path / "probes.pt"))

    assert probes["epochs"] == [0, 1, 2] and probes["layers"] == ["conv1", "conv2"]
    assert torch.equal(probes["images"], images) and torch.equal(probes["labels"], labels)
    assert probes["conv1"].shape == (3, 20, 4, 28, 28) and probes["conv1"].dtype == torch.float16
    assert probes["conv2"].shape == (3, 20, 8, 10, 10)
    assert probes["filters"]["conv2"].shape == (3, 8, 4, 5, 5)
    assert probes["channels"] == {"conv1": {"kept": 4, "total": 4}, "conv2": {"kept": 8, "total": 8}}
    for e, m in enumerate(models):
        acts = activations(m, as_input(images))
        for name in ("conv1", "conv2"):
            assert torch.equal(probes[name][e], acts[f"{name}_act"].half())
            assert torch.equal(probes["filters"][name][e], getattr(m.net, name).weight.detach())
    assert (probes["conv1"] >= 0).all()   # post-activation: ReLU's outputs


def test_record_keeps_the_mode_and_the_weights_and_reads_a_channels_last_model(tiny):
    images, labels = probe_set(tiny)
    rec = ProbeRecorder(SMALL, images, labels)
    model = model_at(0).to(memory_format=torch.channels_last)   # as the trainer holds it on the CPU
    for training in (True, False):
        model.train(training)
        rec.record(0, model)
        assert model.training is training
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        model.net.conv1.weight.add_(1.0)   # the frame holds a copy, not the live weights
    frame = rec.state()
    assert torch.equal(frame["filters"]["conv1"][0] + 1.0, model.net.conv1.weight.detach())
    # Channels-last convolution rounds differently in the last bits of float32; float16 hides most.
    torch.testing.assert_close(frame["conv1"][0].float(), activations(model_at(0), as_input(images))["conv1_act"],
                               atol=1e-3, rtol=1e-3)


def test_recording_an_epoch_again_replaces_it_and_everything_after_it(tiny):
    rec = ProbeRecorder(SMALL, *probe_set(tiny))
    for e in range(4):
        rec.record(e, model_at(e))
    rec.record(2, model_at(7))
    assert rec.epochs == [0, 1, 2]
    assert torch.equal(rec.state()["filters"]["conv1"][2], model_at(7).net.conv1.weight.detach())
    with pytest.raises(ValueError, match="not for a model of"):
        rec.record(3, model_at(3, SMALL.replace(activation="tanh")))
    assert rec.epochs == [0, 1, 2]


def test_thinning_doubles_the_stride_and_keeps_epoch_zero_and_the_latest(tiny, tmp_path):
    images, labels = probe_set(tiny)
    budget = 5 * ProbeRecorder(SMALL, images, labels).frame_bytes    # room for 5 frames
    rec = ProbeRecorder(SMALL, images, labels, budget_bytes=budget, min_frames=1)   # min_frames: all channels
    for e in range(21):
        rec.record(e, model_at(e))
        assert rec.epochs[0] == 0 and rec.epochs[-1] == e and len(rec.epochs) <= 5
        assert all(x % rec.stride == 0 for x in rec.epochs[:-1])
        if e == 8:   # 0 1 2 3 4, then at 5 the stride becomes 2: 0 2 4 5, 0 2 4 6, 0 2 4 6 7, 0 2 4 6 8
            assert rec.epochs == [0, 2, 4, 6, 8] and rec.stride == 2
    # at 9 stride 4: 0 4 8 9, then 0 4 8 12 13 ... 0 4 8 12 16, at 17 stride 8: 0 8 16 17, ... 0 8 16 20
    assert rec.epochs == [0, 8, 16, 20] and rec.stride == 8
    probes = load_probes(rec.save(tmp_path / "probes.pt"))
    assert probes["epochs"] == [0, 8, 16, 20] and probes["stride"] == 8
    for i, e in enumerate(probes["epochs"]):
        assert torch.equal(probes["filters"]["conv2"][i], model_at(e).net.conv2.weight.detach())
    assert os.path.getsize(tmp_path / "probes.pt") < budget


def test_two_hundred_epochs_of_lenet5_stay_under_50_mb(tmp_path):
    images = torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8)
    rec = ProbeRecorder(ModelConfig(), images, torch.arange(20) % 10)
    model = LeNet(ModelConfig())
    for e in range(201):
        rec.record(e, model)
    size = os.path.getsize(rec.save(tmp_path / "probes.pt"))
    assert rec.stride == 2 and rec.epochs == list(range(0, 201, 2))
    assert size < 50e6 and size < DEFAULT_BUDGET_BYTES


def test_a_wide_network_records_the_first_channels_that_fit(tiny):
    images, labels = probe_set(tiny)
    images, labels = images[:4], labels[:4]
    # A frame of C channels per layer for 4 images (conv1 28x28, conv2 10x10, 5x5 kernels):
    # maps 4 * C * (784 + 100) * 2 bytes, filters (C * 1 + C * C) * 25 * 4 bytes:
    # 38,360 bytes for C = 5, 46,632 for C = 6.
    config = SMALL.replace(conv_channels=(8, 12))
    rec = ProbeRecorder(config, images, labels, budget_bytes=16 * 40_000, min_frames=16)
    assert rec.kept == {"conv1": 5, "conv2": 5} and rec.frame_bytes == 38_360
    model = model_at(0, config)
    rec.record(0, model)
    state = rec.state()
    assert state["channels"] == {"conv1": {"kept": 5, "total": 8}, "conv2": {"kept": 5, "total": 12}}
    assert state["conv2"].shape == (1, 4, 5, 10, 10)
    assert torch.equal(state["filters"]["conv2"][0], model.net.conv2.weight.detach()[:5, :5])
    full = activations(model, as_input(images))["conv2_act"]
    assert torch.equal(state["conv2"][0], full[:, :5].half())


def test_the_widest_settings_stay_within_the_budget():
    widest = ModelConfig(conv_channels=(256, 256, 256), kernel_size=11, padding="same")
    rec = ProbeRecorder(widest, torch.zeros(20, 28, 28, dtype=torch.uint8), torch.arange(20) % 10)
    assert rec.frame_bytes <= DEFAULT_BUDGET_BYTES // MIN_FRAMES
    assert MIN_FRAMES <= rec.max_frames and rec.max_frames * rec.frame_bytes <= DEFAULT_BUDGET_BYTES
    assert 1 < rec.kept["conv1"] < 256


def test_resume_drops_frames_after_the_resumed_epoch_and_continues_like_an_unbroken_run(tiny, tmp_path):
    images, labels = probe_set(tiny)
    budget = 5 * ProbeRecorder(SMALL, images, labels).frame_bytes
    unbroken = ProbeRecorder(SMALL, images, labels, budget_bytes=budget, min_frames=1)
    for e in range(11):
        unbroken.record(e, model_at(e))

    broken = ProbeRecorder(SMALL, images, labels, budget_bytes=budget, min_frames=1)
    for e in range(10):                   # ... 0 4 8 9: the run saved epoch 9's probes, then died
        broken.record(e, model_at(e))
    broken.save(tmp_path / "probes.pt")
    resumed = ProbeRecorder.resume(tmp_path / "probes.pt", SMALL, epoch=8)   # its last checkpoint: 8
    assert resumed.epochs == [0, 4, 8] and resumed.stride == 4
    for e in (9, 10):
        resumed.record(e, model_at(e))

    a, b = unbroken.state(), resumed.state()
    assert a["epochs"] == b["epochs"] == [0, 4, 8, 10]
    for key in ("conv1", "conv2", "images", "labels"):
        assert torch.equal(a[key], b[key])
    assert torch.equal(a["filters"]["conv1"], b["filters"]["conv1"])

    with pytest.raises(ValueError, match="another model"):
        ProbeRecorder.resume(tmp_path / "probes.pt", SMALL.replace(conv_channels=(4, 9)), epoch=8)


def test_save_replaces_the_file_whole(tiny, tmp_path):
    rec = ProbeRecorder(SMALL, *probe_set(tiny))
    path = tmp_path / "run" / "probes.pt"
    rec.record(0, model_at(0))
    rec.save(path)
    rec.record(1, model_at(1))
    rec.save(path)
    assert load_probes(path)["epochs"] == [0, 1]
    assert os.listdir(path.parent) == ["probes.pt"]   # no temporary file left beside it


def test_load_probes_refuses_other_files(tmp_path):
    (tmp_path / "text.pt").write_text("not a torch file")
    torch.save({"format": "lenet-lab/checkpoint", "version": 1}, tmp_path / "ckpt.pt")
    torch.save({"format": "lenet-lab/probes", "version": 99}, tmp_path / "newer.pt")
    torch.save({"format": "lenet-lab/probes", "version": 1, "epochs": []}, tmp_path / "damaged.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    for name, message in (("text.pt", "not a LeNet Lab probes file: it is not a file written by torch.save"),
                          ("ckpt.pt", "not a LeNet Lab probes file .it is a torch file of another kind"),
                          ("newer.pt", "newer"), ("damaged.pt", "damaged"),
                          ("list.pt", "not a LeNet Lab probes file .it is a torch file of another kind")):
        with pytest.raises(ValueError, match=message):
            load_probes(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_probes(tmp_path / "missing.pt")
