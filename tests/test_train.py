"""The trainer against a plain reference loop; its callbacks, controls, step batching, the runs
that blow up or do not learn, and carrying a run on exactly where it stopped."""
import math
import threading
import time

import pytest
import torch
import torch.nn.functional as F

from lenet_core.data import load_dataset
from lenet_core.model import ModelConfig, preset
from lenet_core.train import (Callback, Control, EpochMetrics, TrainConfig, Trainer, TrainState, as_input, at_chance,
                               build_model, evaluate, plateau_note, _advice)
from synthetic import synthetic_idx

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


class Steps(Callback):
    """Every loss the trainer reports, by step, and the size of each report."""

    def __init__(self):
        self.losses, self.blocks, self.epochs = [], [], []

    def on_steps(self, first_step, losses, epoch):
        assert first_step == len(self.losses) + 1 + getattr(self, "offset", 0)
        self.losses += losses
        self.blocks.append((first_step, len(losses), epoch))

    def on_epoch_end(self, metrics, state, model):
        self.epochs.append(metrics)


def fit(config, data, state=None, model=None, sync_every=None, control=None):
    steps = Steps()
    if state is not None:
        steps.offset = state.step
    model = model or build_model(config)
    result = Trainer(config, [steps], control, sync_every).fit(model, data, state)
    return result, steps, model


def test_training_lowers_the_loss_and_beats_chance(tiny):
    config = cfg(epochs=3)
    model = build_model(config)
    before = evaluate(model, tiny.test_images, tiny.test_labels)
    result, steps, _ = fit(config, tiny, model=model)
    after = evaluate(model, tiny.test_images, tiny.test_labels)
    assert result.status == "finished" and len(result.epochs) == 3
    assert after["loss"] < 0.5 * before["loss"]
    assert after["accuracy"] > 0.5  # chance is 0.1
    assert result.epochs[-1].val_acc == pytest.approx(after["accuracy"]) == result.final["accuracy"]
    assert len(steps.losses) == 3 * math.ceil(512 / 32) == result.state.step


@pytest.mark.parametrize("model", [SMALL, ModelConfig(conv_channels=(4, 8), dense_widths=(32,))],
                         ids=["relu-max", "sigmoid-avg"])
def test_matches_a_plain_reference_loop(tiny, model):
    """Same seed, same batches, same maths: the engine's per-step losses equal a textbook loop's on
    model.py's network in NCHW (so none of the CPU fast paths: they change no result)."""
    config = cfg(model=model, epochs=1, optimizer="sgd", lr=0.1)
    _, engine, _ = fit(config, tiny)

    model = build_model(config)
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
    assert engine.losses == pytest.approx(reference, rel=1e-4, abs=1e-5)


def test_same_seed_same_metrics_on_cpu(tiny):
    (a, sa, _), (b, sb, _), (_, sc, _) = fit(cfg(), tiny), fit(cfg(), tiny), fit(cfg(seed=4), tiny)
    strip = lambda r: [(m.train_loss, m.train_acc, m.val_loss, m.val_acc) for m in r.epochs]
    assert sa.losses == sb.losses and strip(a) == strip(b)
    assert sa.losses != sc.losses


@pytest.mark.parametrize("k", [1, 5, 16])
def test_losses_are_read_back_every_k_steps(tiny, k):
    """The GPU path's step batching, tried on the CPU: one read per k steps (the last block of an
    epoch may be shorter), the same losses as one read per step."""
    _, steps, _ = fit(cfg(), tiny, sync_every=k)
    _, every, _ = fit(cfg(), tiny, sync_every=1)
    assert steps.losses == every.losses and len(steps.losses) == 32
    assert all(n == k for _, n, _ in steps.blocks if n != 16 % k)
    assert [e for _, _, e in steps.blocks] == sorted(e for _, _, e in steps.blocks)  # no block spans two epochs
    assert len(steps.blocks) == 2 * math.ceil(16 / k)


def test_a_run_whose_loss_explodes_is_diverged_with_advice(tiny):
    config = cfg(lr=10, optimizer="sgd", model=preset("modern"))
    result, steps, _ = fit(config, tiny, sync_every=4)
    assert result.status == "diverged" and result.reason == "exploded"
    assert "lower learning rate" in result.message and "e.g. 1." in result.message
    assert all(math.isfinite(v) for v in steps.losses)  # the curve gets no NaN
    assert result.final == {}  # blown-up weights are not evaluated


def test_adam_at_learning_rate_one_is_not_finished(tiny):
    config = cfg(lr=1.0, optimizer="adam", epochs=4)
    result, _, _ = fit(config, tiny)
    assert result.status == "diverged", result.message
    assert "0.001" in result.message


def test_a_run_at_chance_with_a_flat_loss_goes_on_training(tiny):
    """Sitting at chance is the chapter's sigmoid plateau, not a failure: the run trains every epoch
    it planned, and is marked as not having learned only because it ends there."""
    config = cfg(model=preset("classic"), optimizer="sgd", lr=1e-5, epochs=5)
    result, steps, _ = fit(config, tiny)
    assert [m.epoch for m in steps.epochs] == [1, 2, 3, 4, 5]
    assert all(at_chance(m.val_acc, 10) for m in steps.epochs)
    losses = [m.train_loss for m in steps.epochs]
    assert max(losses) - min(losses) < 0.01 * losses[0]  # flat, the case that used to be cut short
    assert result.status == "diverged" and result.reason == "chance"
    assert "after all 5 epochs" in result.message and "raise the learning rate from 1e-05" in result.message


def test_a_plateau_is_noted_while_it_lasts():
    def epoch(n, acc):
        return EpochMetrics(n, 2.3, acc, 2.3, acc, 1000.0, 1.0)

    assert plateau_note([epoch(1, 0.5)], 10) == ""
    note = plateau_note([epoch(1, 0.1), epoch(2, 0.1), epoch(3, 0.11)], 10)
    assert note.startswith("Still at chance after 3 epochs (11.0%)") and "waits a few epochs" in note
    assert plateau_note([epoch(1, 0.1), epoch(2, 0.6), epoch(3, 0.1)], 10).startswith("Still at chance after 1 epoch ")
    assert plateau_note([epoch(1, 0.1), epoch(2, 0.6)], 10) == ""


def test_the_chapters_learning_rate_is_not_called_larger_than_itself():
    advice = _advice(cfg(model=preset("classic"), optimizer="sgd", lr=0.1))
    assert "larger learning rate than 0.1" not in advice and "from 0.1 (e.g. to 0.9)" in advice


def wait_for(predicate, timeout=20.0):
    t0 = time.perf_counter()
    while not predicate():
        if time.perf_counter() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_pause_resume_and_stop_act_between_steps(tiny):
    control, steps = Control(), Steps()
    config = cfg(epochs=200, batch_size=8)
    box = {}
    thread = threading.Thread(target=lambda: box.update(r=Trainer(config, [steps], control).fit(build_model(config), tiny)))
    thread.start()
    try:
        wait_for(lambda: len(steps.losses) > 5)
        control.pause()
        time.sleep(0.2)
        paused_at = len(steps.losses)
        time.sleep(0.4)
        assert len(steps.losses) == paused_at
        control.resume()
        wait_for(lambda: len(steps.losses) > paused_at + 5)
        t0 = time.perf_counter()
        control.stop()
        thread.join(5)
        stop_s = time.perf_counter() - t0
    finally:
        control.stop()
        thread.join(5)
    result = box["r"]
    assert result.status == "stopped" and stop_s < 1.0
    assert "Stopped after" in result.message and result.state.batch > 0 and result.final["count"] == 256


def test_resumed_runs_match_an_uninterrupted_one(tiny):
    """Carried on from the state saved at an epoch's end, or from a stop in the middle of an epoch,
    a run takes exactly the steps and reaches exactly the weights it would have without the break."""
    config = cfg(epochs=3)
    straight, s_steps, s_model = fit(config, tiny)

    first, a_steps, model = fit(config.replace(epochs=2), tiny)  # two epochs, then carry on to three
    rest, b_steps, model = fit(config, tiny, state=first.state, model=model)
    assert a_steps.losses + b_steps.losses == s_steps.losses
    assert [m.val_acc for m in first.epochs + rest.epochs] == [m.val_acc for m in straight.epochs]
    for p, q in zip(model.parameters(), s_model.parameters()):
        assert torch.equal(p, q)

    class StopAt(Callback):  # a stop in the middle of epoch 2
        def __init__(self, control):
            self.control = control

        def on_steps(self, first_step, losses, epoch):
            if first_step >= 24:
                self.control.stop()

    control = Control()
    model = build_model(config)
    stopped = Trainer(config, [StopAt(control)], control).fit(model, tiny)
    assert stopped.status == "stopped" and stopped.state.epoch == 1 and stopped.state.batch == 8
    rest, _, model = fit(config, tiny, state=stopped.state, model=model)
    assert rest.status == "finished" and [m.epoch for m in rest.epochs] == [2, 3]
    assert [m.train_loss for m in rest.epochs] == pytest.approx([m.train_loss for m in straight.epochs[1:]])
    for p, q in zip(model.parameters(), s_model.parameters()):
        torch.testing.assert_close(p, q)


def test_a_run_continued_from_another_runs_weights_counts_on(tiny):
    config = cfg(epochs=2)
    first, _, model = fit(config, tiny)
    more = config.replace(epochs=4, optimizer="sgd", lr=0.01)  # new settings, fresh optimizer
    result, steps, _ = fit(more, tiny, state=TrainState(epoch=2, step=first.state.step), model=model)
    assert [m.epoch for m in result.epochs] == [3, 4] and steps.blocks[0][0] == first.state.step + 1


def test_config_round_trip_and_validation():
    c = cfg(model=preset("modern"), optimizer="adam", lr=1e-3)
    assert TrainConfig.from_dict(c.to_dict()) == c
    for bad in (dict(lr=0), dict(lr=float("nan")), dict(batch_size=0), dict(epochs=0), dict(epochs=100000),
                dict(epochs=-5), dict(optimizer="rmsprop"), dict(dataset="cifar"), dict(device="tpu"),
                dict(batch_size=4096), dict(seed=-1)):
        with pytest.raises(ValueError):
            cfg(**bad).validate()
    for bad in ({"lr": "0.1"}, {"epochs": 2.5}, {"epochs": True}, {"model": {"dense_widths": "120"}},
                {"model": {"conv_channels": [6, "16"]}}, {"dropout": 0.5}, ["not", "a", "dict"]):
        with pytest.raises(ValueError):
            TrainConfig.from_dict(bad if isinstance(bad, list) else {**c.to_dict(), **bad})


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
