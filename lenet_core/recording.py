"""What a run records besides its losses, for the views no other CNN demo has: the probe frames
behind the epoch scrubber (probes.pt), the map over training (features.pt), the health of every layer while it trains (health.jsonl:
saturated and dead units, gradient sizes), and TensorBoard event files of its scalars, so that
`tensorboard --logdir runs` shows LeNet Lab's runs beside other projects'."""
from __future__ import annotations

import json
import time

from .data import ImageData
from .diagnostics import gradient_norms, layer_health
from .feature_frames import FILE as FEATURES_FILE
from .feature_frames import FeatureRecorder
from .probes import ProbeRecorder, probe_set
from .runs import Run
from .train import Callback, EpochMetrics, FitResult, TrainState

HEALTH_EVERY = 50      # steps between two health readings (a probe pass and the gradient norms)
HEALTH_POINTS = 300    # the most readings live.json keeps for the chart (halved when full)


class Probes(Callback):
    """probes.pt: the conv maps of the probe images and the filters, at epoch 0 and each epoch's end."""

    def __init__(self, run: Run, data: ImageData):
        self.run, self.data = run, data

    def on_fit_start(self, trainer, state: TrainState):
        path, model = self.run.path / "probes.pt", trainer.model
        images, labels = probe_set(self.data)
        if state.epoch and path.exists():
            try:
                self.recorder = ProbeRecorder.resume(path, model.config, state.epoch)
                return
            except (ValueError, OSError, TypeError, KeyError, IndexError, RuntimeError) as e:
                # A damaged recording is set aside, not lost, and a new one starts from here.
                path.replace(path.with_name("probes.damaged.pt"))
                self.run.set_status(self.run.info().status, None, repaired=[
                    *self.run.info().repaired, f"probes.pt: {str(e).replace(str(path), '').strip(' :')[:200]}; "
                                               f"kept as probes.damaged.pt, recording again from epoch {state.epoch}"])
        self.recorder = ProbeRecorder(model.config, images, labels)
        self.recorder.record(state.epoch, model)
        self.recorder.save(path)

    def on_epoch_end(self, metrics: EpochMetrics, state: TrainState, model):
        self.recorder.record(state.epoch, model)
        self.recorder.save(self.run.path / "probes.pt")


class Features(Callback):
    """features.pt: the last hidden layer's output of a fixed sample of test images, at epoch 0
    and each epoch's end (the map over training; lenet_core/feature_frames.py)."""

    def __init__(self, run: Run, data: ImageData):
        self.run, self.data = run, data

    def on_fit_start(self, trainer, state: TrainState):
        path, model = self.run.path / FEATURES_FILE, trainer.model
        if state.epoch and path.exists():
            try:
                self.recorder = FeatureRecorder.resume(path, model.config, state.epoch, self.data.test_images)
                return
            except (ValueError, OSError):
                pass  # a damaged file: record afresh from here
        self.recorder = FeatureRecorder.for_data(model.config, self.data.test_images, self.data.test_labels)
        self.recorder.record(state.epoch, model)
        self.recorder.save(path)

    def on_epoch_end(self, metrics: EpochMetrics, state: TrainState, model):
        self.recorder.record(state.epoch, model)
        self.recorder.save(self.run.path / FEATURES_FILE)


class Health(Callback):
    """Every HEALTH_EVERY steps: each layer's health on the probe images and each layer's gradient
    norm, appended to health.jsonl; the recent ones are kept for the live chart."""

    def __init__(self, run: Run, data: ImageData, every: int = HEALTH_EVERY):
        self.run, self.every = run, every
        self.images = probe_set(data)[0]
        self.readings: list[dict] = []
        self.epoch = 1

    def on_fit_start(self, trainer, state: TrainState):
        self.epoch = state.epoch + 1
        self.readings = [r for r in self.run.health() if r["step"] <= state.step][-HEALTH_POINTS:]

    def on_steps(self, first_step, losses, epoch):
        self.epoch = epoch

    def on_after_backward(self, model, step: int):
        if step % self.every and step != 1:
            return
        reading = {"step": step, "epoch": self.epoch, "grad": gradient_norms(model),
                   "layers": {name: {k: v for k, v in h.items() if k != "activation"}
                              for name, h in layer_health(model, self.images).items()}}
        with open(self.run.path / "health.jsonl", "a") as f:
            f.write(json.dumps(reading) + "\n")
        self.readings.append(reading)
        if len(self.readings) > HEALTH_POINTS:
            self.readings = self.readings[::2]

    def live(self) -> list[dict]:
        return self.readings


class TensorBoard(Callback):
    """The run's scalars as TensorBoard event files in its folder (tensorboardX: no TensorFlow)."""

    def __init__(self, run: Run):
        self.run = run

    def on_fit_start(self, trainer, state: TrainState):
        from tensorboardX import SummaryWriter

        # purge_step: TensorBoard drops what an earlier, killed writer logged after the checkpoint.
        self.writer = SummaryWriter(str(self.run.path), purge_step=state.step + 1 if state.step else None,
                                    flush_secs=10)

    def on_steps(self, first_step, losses, epoch):
        for i, v in enumerate(losses):
            self.writer.add_scalar("loss/step", v, first_step + i)

    def on_epoch_end(self, m: EpochMetrics, state: TrainState, model):
        for tag, value in (("loss/train", m.train_loss), ("loss/validation", m.val_loss), ("accuracy/train", m.train_acc),
                           ("accuracy/validation", m.val_acc), ("speed/samples_per_s", m.samples_per_s)):
            self.writer.add_scalar(tag, value, m.epoch, walltime=time.time())
        self.writer.flush()

    def on_fit_end(self, result: FitResult):
        self.writer.close()


def recorders(run: Run, data: ImageData) -> tuple[list[Callback], Health]:
    health = Health(run, data)
    return [Probes(run, data), Features(run, data), health, TensorBoard(run)], health
