"""The chapter's training loop on whole tensors: cross-entropy, minibatch SGD (or Adam), the test
set as the validation set. It reports through callbacks, obeys a pause/stop control between steps,
and can carry a run on exactly where it stopped (TrainState)."""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import fastpath
from .data import DATASETS, ImageData
from .model import LeNet, ModelConfig
from .settings import ConfigError, check_bounds, from_dict, setting

OPTIMIZERS = ("sgd", "momentum", "adam")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run: the architecture and how it is trained. The same object goes
    from the Train page's controls (or the CLI's flags) to the trainer, the run folder and back."""

    model: ModelConfig = ModelConfig()
    dataset: str = setting("fashion-mnist", "Data set", "The chapter trains on Fashion-MNIST (clothes); MNIST is "
                                                        "handwritten digits.", short="data", choices=tuple(DATASETS))
    optimizer: str = setting("sgd", "Optimizer", "The chapter uses plain minibatch SGD.", choices=OPTIMIZERS)
    lr: float = setting(0.1, "Learning rate", "Step size. The chapter uses 0.1 with SGD; Adam wants about 0.001. "
                                              "Too large and the loss blows up.", short="lr", low=1e-5, high=10)
    batch_size: int = setting(128, "Batch size", "Images per step. The chapter uses 128.", short="batch",
                              low=8, high=1024)
    epochs: int = setting(10, "Epochs", "Passes over the training set. The chapter trains for 10.", low=1, high=200)
    seed: int = setting(0, "Seed", "Fixes the initial weights and the order of the data: same seed, same run.",
                        low=0, high=2**31 - 1)
    device: str = setting("auto", "Device", "auto picks a GPU if there is one.", choices=DEVICES)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def steps_per_epoch(self, n_train: int) -> int:
        return math.ceil(n_train / self.batch_size)  # the last batch may be smaller

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "model": self.model.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        if not isinstance(d, dict):
            raise ConfigError("config", f"must be a mapping of settings, got {type(d).__name__}")
        return from_dict(cls, {**d, "model": ModelConfig.from_dict(d.get("model", {}))}, "training setting")

    def validate(self) -> None:
        """Every setting within its bounds, and a network that can be built (not whether this machine has
        the device it asks for: a run trained on a GPU still loads here)."""
        self.model.validate()
        check_bounds(self)


def resolve_device(name: str = "auto") -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def device_label(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    n = torch.get_num_threads()
    return f"CPU ({n} thread{'s' if n != 1 else ''})"


def build_model(config: TrainConfig) -> LeNet:
    """The model for a run, initialised from the run's seed (so a seed fixes everything)."""
    torch.manual_seed(config.seed)
    return LeNet(config.model)


def make_optimizer(config: TrainConfig, params):
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    return torch.optim.SGD(params, lr=config.lr, momentum=0.9 if config.optimizer == "momentum" else 0.0)


def as_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1], as torchvision's ToTensor gives."""
    return images.unsqueeze(1).float().mul_(1 / 255)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 2048,
             num_classes: int | None = None, should_stop=lambda: False, keep_predictions: bool = False) -> dict:
    """Loss, accuracy and confusion matrix (rows: true class) of a model on a labelled set;
    with keep_predictions, also each image's predicted class and its probability (CPU tensors)."""
    model.eval()
    device = next(model.parameters()).device
    n_cls = num_classes or model.config.num_classes
    confusion = torch.zeros(n_cls, n_cls, dtype=torch.long, device=device)
    total_loss = torch.zeros((), device=device)
    predictions, confidence = [], []
    for i in range(0, len(images), batch_size):
        if should_stop():
            break
        logits = model(as_input(images[i:i + batch_size].to(device)))
        y = labels[i:i + batch_size].to(device)
        total_loss += F.cross_entropy(logits, y, reduction="sum")
        pred = logits.argmax(1)
        confusion += torch.bincount(y * n_cls + pred, minlength=n_cls * n_cls).view(n_cls, n_cls)
        if keep_predictions:
            predictions.append(pred.cpu())
            confidence.append(torch.softmax(logits, 1).gather(1, pred[:, None])[:, 0].cpu())
    confusion = confusion.cpu()
    n = int(confusion.sum())
    result = {"loss": float(total_loss) / max(n, 1), "accuracy": float(confusion.diag().sum()) / max(n, 1),
              "per_class_accuracy": (confusion.diag().float() / confusion.sum(1).clamp(min=1).float()).tolist(),
              "confusion": confusion.tolist(), "count": n}
    if keep_predictions:
        result["predictions"] = torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long)
        result["confidence"] = torch.cat(confidence) if confidence else torch.zeros(0)
    return result


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    samples_per_s: float
    epoch_time: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainState:
    """Where a run stands, enough to carry it on exactly: a checkpoint saves it with the weights."""

    epoch: int = 0                 # finished epochs
    step: int = 0                  # optimizer steps taken
    batch: int = 0                 # batches of the unfinished epoch already taken (0 between epochs)
    sums: tuple[float, int, int] = (0.0, 0, 0)  # that epoch's loss sum, correct answers, images seen
    seconds: float = 0.0           # that epoch's training time so far
    shuffle: torch.Tensor | None = None   # the generator state that draws that epoch's order
    optimizer: dict | None = None

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "sums": list(self.sums)}

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        return cls(**{**d, "sums": tuple(d.get("sums", (0.0, 0, 0)))})


@dataclass
class FitResult:
    status: str                 # finished | stopped | diverged
    message: str
    epochs: list[EpochMetrics]  # the epochs trained in this fit
    state: TrainState
    final: dict = field(default_factory=dict)  # the last evaluation: loss, accuracy, per class
    reason: str = ""            # for diverged: "exploded" or "chance"


class Callback:
    """Override what you need; the trainer calls these between steps."""

    def on_fit_start(self, trainer: Trainer, state: TrainState): ...
    def on_steps(self, first_step: int, losses: list[float], epoch: int): ...  # every `sync_every` steps
    def on_after_backward(self, model: LeNet, step: int): ...
    def on_pause(self, paused: bool): ...
    def on_epoch_end(self, metrics: EpochMetrics, state: TrainState, model: LeNet): ...
    def on_fit_end(self, result: FitResult): ...


class Control:
    """Pause and stop switches that the loop polls between steps (thread-safe). Other controls
    (a run folder's control file) offer the same three methods."""

    def __init__(self):
        self._stop, self._running = threading.Event(), threading.Event()
        self._running.set()

    def stop(self):
        self._stop.set()
        self._running.set()

    def pause(self):
        self._running.clear()

    def resume(self):
        self._running.set()

    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self) -> None:
        while not self._running.wait(0.05):
            pass


# A cross-entropy this far above chance's (ln C) means the weights have blown up.
EXPLODED_FACTOR = 50


def at_chance(accuracy: float, classes: int) -> bool:
    return accuracy < 1 / classes + 0.02


def plateau_note(epochs: list[EpochMetrics], classes: int) -> str:
    """A word for a run whose latest epochs sit at chance. Sitting there is no failure: the chapter's
    sigmoid LeNet often waits a few epochs before it learns, so a run is never stopped for it, only
    marked as not having learned if it ends there."""
    stuck = 0
    for m in reversed(epochs):
        if not at_chance(m.val_acc, classes):
            break
        stuck += 1
    if not stuck:
        return ""
    return (f"Still at chance after {stuck} epoch{'s' * (stuck != 1)} ({epochs[-1].val_acc:.1%}): the chapter's "
            "sigmoid LeNet often waits a few epochs before it learns. Watch the training loss: while it falls, "
            "the network is learning.")


class Trainer:
    """Minibatch training on tensors already on the device: `Trainer(config).fit(model, data)`."""

    def __init__(self, config: TrainConfig, callbacks=(), control=None, sync_every: int | None = None):
        config.validate()
        if config.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device", "cuda was asked for but no CUDA GPU is available; use auto or cpu")
        self.config, self.callbacks, self.control = config, list(callbacks), control or Control()
        self.device = resolve_device(config.device)
        # Reading a loss back makes the host wait for the GPU; it batches k losses per read.
        self.sync_every = sync_every or (1 if self.device.type == "cpu" else 25)

    def _emit(self, name: str, *args):
        for cb in self.callbacks:
            getattr(cb, name)(*args)

    def fit(self, model: LeNet, data: ImageData, state: TrainState | None = None) -> FitResult:
        cfg, dev, control = self.config, self.device, self.control
        state = dataclasses.replace(state) if state else TrainState()
        self.model = model.to(dev)
        net, layout = fastpath.for_training(model, dev)
        data = data.to(dev)
        n, classes = len(data.train_images), model.config.num_classes
        batches = cfg.steps_per_epoch(n)
        self.total_steps = batches * cfg.epochs
        optimizer = make_optimizer(cfg, model.parameters())
        if state.optimizer:
            optimizer.load_state_dict(state.optimizer)
        gen = torch.Generator().manual_seed(cfg.seed)
        epochs, final, status, reason, message = [], {}, "finished", "", ""
        self._emit("on_fit_start", self, state)

        while state.epoch < cfg.epochs and status == "finished":
            epoch = state.epoch + 1
            if state.shuffle is not None:  # carrying on an epoch (or its start) where it was left
                gen.set_state(state.shuffle)
            state.shuffle = gen.get_state()
            perm = torch.randperm(n, generator=gen).to(dev)
            loss_sum, correct, seen = state.sums
            loss_sum, correct = torch.tensor(float(loss_sum), device=dev), torch.tensor(int(correct), device=dev)
            model.train()
            started, pending = time.perf_counter() - state.seconds, []
            for b in range(state.batch, batches):
                if control.paused():
                    pause_began = time.perf_counter()
                    self._emit("on_pause", True)
                    control.wait_while_paused()
                    self._emit("on_pause", False)
                    started += time.perf_counter() - pause_began
                if control.stop_requested():
                    status = "stopped"
                    break
                idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                x = as_input(data.train_images.index_select(0, idx)).contiguous(memory_format=layout)
                y = data.train_labels.index_select(0, idx)
                logits = net(x)
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self._emit("on_after_backward", model, state.step + 1)
                optimizer.step()
                state.step, state.batch, seen = state.step + 1, b + 1, seen + len(idx)
                loss_sum += loss.detach() * len(idx)
                correct += (logits.argmax(1) == y).sum()
                pending.append(loss.detach())
                if len(pending) == self.sync_every or b == batches - 1:
                    losses = torch.stack(pending).tolist()  # the one host sync of k steps
                    first = state.step - len(pending) + 1
                    pending.clear()
                    bad = next((i for i, v in enumerate(losses)
                                if not math.isfinite(v) or v > EXPLODED_FACTOR * math.log(classes)), None)
                    if bad is not None:  # report up to the blow-up (a finite value), never a NaN
                        losses = losses[:bad + math.isfinite(losses[bad])]
                    if losses:
                        self._emit("on_steps", first, losses, epoch)
                    if bad is not None:
                        worst = losses[-1] if len(losses) > bad else math.nan
                        status, reason = "diverged", "exploded"
                        message = (f"The loss exploded to {worst:.3g} by step {first + bad:,} (epoch {epoch}): the "
                                   f"weights blew up. Try a lower learning rate than {cfg.lr:g}, e.g. "
                                   f"{cfg.lr / 10:g}" + (" (Adam usually wants about 0.001)."
                                                         if cfg.optimizer == "adam" else "."))
                        break
            state.seconds = time.perf_counter() - started
            state.sums = (float(loss_sum), int(correct), seen)
            if status != "finished":
                break  # a partial epoch is not an epoch: it is neither evaluated nor reported
            val = evaluate(model, data.test_images, data.test_labels)
            metrics = EpochMetrics(epoch, state.sums[0] / seen, state.sums[1] / seen, val["loss"], val["accuracy"],
                                   seen / max(state.seconds, 1e-9), state.seconds)
            state = dataclasses.replace(state, epoch=epoch, batch=0, sums=(0.0, 0, 0), seconds=0.0,
                                        shuffle=gen.get_state(), optimizer=optimizer.state_dict())
            epochs.append(metrics)
            final = val
            self._emit("on_epoch_end", metrics, state, model)

        state.optimizer = optimizer.state_dict()
        if status == "finished" and epochs and at_chance(epochs[-1].val_acc, classes):
            status, reason = "diverged", "chance"  # it ended where it began: it did not learn
        if reason == "chance":
            last = epochs[-1]
            message = (f"Did not learn: accuracy is still at chance ({last.val_acc:.1%}) after all {last.epoch} "
                       f"epochs (training loss {last.train_loss:.3f}). " + _advice(cfg))
        elif status == "stopped":
            message = f"Stopped after {state.step:,} steps ({state.epoch} full epoch{'s' * (state.epoch != 1)})."
        elif status == "finished":
            message = f"Finished {cfg.epochs} epochs."
        if status == "stopped" and state.batch:  # stopped mid-epoch: the weights it has now, evaluated
            final = evaluate(model, data.test_images, data.test_labels)
        model.to(memory_format=torch.contiguous_format).eval()
        result = FitResult(status, message, epochs, state, final, reason)
        self._emit("on_fit_end", result)
        return result


def _advice(cfg: TrainConfig) -> str:
    if cfg.optimizer == "adam" and cfg.lr > 0.01:
        return f"Adam at learning rate {cfg.lr:g} is far too fast for it: try 0.001."
    if cfg.model.activation == "sigmoid":
        larger = max(0.9, round(cfg.lr * 3, 4))
        return (f"Sigmoid networks can sit at chance for many epochs: train more epochs, raise the learning rate "
                f"from {cfg.lr:g} (e.g. to {larger:g}), add momentum, or use ReLU (the modern preset).")
    return f"Try another learning rate than {cfg.lr:g} (0.1 for SGD, 0.001 for Adam) or the xavier init."
