"""The chapter's training loop on whole tensors, reporting through callbacks,
and a background job around it that a UI can watch, pause and stop."""
from __future__ import annotations

import atexit
import ctypes
import dataclasses
import math
import platform
import threading
import time
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import DATASETS, ImageData, load_dataset
from .model import ConfigError, LeNet, ModelConfig

OPTIMIZERS = ("sgd", "momentum", "adam")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run: the architecture plus how it is trained.
    The same object goes from the UI's controls to the trainer to the checkpoint."""

    model: ModelConfig = ModelConfig()
    dataset: str = "fashion-mnist"
    lr: float = 0.1
    batch_size: int = 128
    epochs: int = 10
    optimizer: str = "sgd"
    seed: int = 0
    device: str = "auto"

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def steps_per_epoch(self, n_train: int) -> int:
        """Optimizer steps in one epoch over `n_train` images (the last batch may be smaller)."""
        return math.ceil(n_train / self.batch_size)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        model = ModelConfig.from_dict(d.pop("model", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(sorted(unknown)[0], "is not a training setting")
        return cls(model=model, **d)

    def validate(self) -> None:
        self.model.validate()
        if self.dataset not in DATASETS:
            raise ConfigError("dataset", f"'{self.dataset}' is not one of {', '.join(DATASETS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer", f"'{self.optimizer}' is not one of {', '.join(OPTIMIZERS)}")
        if self.device not in DEVICES:
            raise ConfigError("device", f"'{self.device}' is not one of {', '.join(DEVICES)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError("lr", f"the learning rate must be a positive number, got {self.lr}")
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"must be at least 1, got {self.batch_size}")
        if self.epochs < 1:
            raise ConfigError("epochs", f"must be at least 1, got {self.epochs}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device", "cuda was asked for but no CUDA GPU is available; use auto or cpu")


# glibc's malloc hands big blocks (from 128 KB, adjusted as they are freed) to mmap and returns
# freed memory at the top of its heap to the system, so a training step whose tensors are a few
# MB each can fault in fresh zeroed pages for them at every step: with 32 filters in conv1 (12.8 MB
# maps at batch 128) a CPU step took 25-26 ms here, and 10-13 ms with the two limits below fixed
# (benchmarks/engine_ops.py). The chapter's LeNet-5 (2.4 MB maps) did not change. This is the main
# thread's heap (the CLI, scripts): a TrainingJob's thread, with an arena of its own, trained that
# model at about 11,500 samples/s with or without the settings.
KEEP_HEAP_BELOW = 32 << 20    # blocks up to this come from the heap (glibc's largest allowed value)
KEEP_FREED_UP_TO = 512 << 20  # free heap memory kept for reuse before any is given back
_ALLOCATOR_TUNED: bool | None = None


def keep_freed_memory() -> bool:
    """Once per process, on glibc: serve tensors up to KEEP_HEAP_BELOW from the heap and keep up
    to KEEP_FREED_UP_TO of freed memory for reuse (mallopt). True if the settings are in place.
    The cost: the process keeps that much memory after a large run, instead of giving it back."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is None:
        _ALLOCATOR_TUNED = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL("libc.so.6")
                m_trim_threshold, m_mmap_threshold = -1, -3  # from malloc.h
                _ALLOCATOR_TUNED = bool(libc.mallopt(m_mmap_threshold, KEEP_HEAP_BELOW)
                                        and libc.mallopt(m_trim_threshold, KEEP_FREED_UP_TO))
            except (OSError, AttributeError):
                pass
    return _ALLOCATOR_TUNED


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_label(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    n = torch.get_num_threads()
    return f"CPU ({n} thread{'s' if n != 1 else ''})"


def make_optimizer(config: TrainConfig, params):
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    momentum = 0.9 if config.optimizer == "momentum" else 0.0
    return torch.optim.SGD(params, lr=config.lr, momentum=momentum)


def as_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1], as ToTensor gives."""
    return images.unsqueeze(1).float().mul_(1 / 255)


@dataclass
class StepEvent:
    step: int          # global, 1-based
    epoch: int         # 1-based
    batch: int         # within the epoch, 1-based
    batches: int       # per epoch
    loss: float


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
class FitResult:
    status: str                     # finished | stopped | diverged
    message: str
    epochs: list[EpochMetrics]
    steps: list[tuple[int, float]]  # (global step, loss)


class Callback:
    """Override what you need; the trainer calls these from its own thread."""

    def on_fit_start(self, trainer: "Trainer", total_steps: int): ...
    def on_step(self, event: StepEvent): ...
    def on_epoch_end(self, metrics: EpochMetrics): ...
    def on_fit_end(self, result: FitResult): ...


class Control:
    """Thread-safe pause/stop switches the training loop polls between steps."""

    def __init__(self):
        self.stop_event = threading.Event()
        self.running = threading.Event()
        self.running.set()

    def stop(self):
        self.stop_event.set()
        self.running.set()

    def pause(self):
        self.running.clear()

    def resume(self):
        self.running.set()

    @property
    def paused(self) -> bool:
        return not self.running.is_set()

    def wait_if_paused(self) -> float:
        """Block while paused (waking to notice a stop); return seconds spent paused."""
        if self.running.is_set():
            return 0.0
        t0 = time.perf_counter()
        while not self.running.wait(0.05):
            pass
        return time.perf_counter() - t0


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
        x = as_input(images[i:i + batch_size].to(device))
        y = labels[i:i + batch_size].to(device)
        logits = model(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum")
        pred = logits.argmax(1)
        confusion += torch.bincount(y * n_cls + pred, minlength=n_cls * n_cls).view(n_cls, n_cls)
        if keep_predictions:
            predictions.append(pred.cpu())
            confidence.append(torch.softmax(logits, 1).gather(1, pred[:, None])[:, 0].cpu())
    confusion = confusion.cpu()
    n = int(confusion.sum())
    per_class = (confusion.diag().float() / confusion.sum(1).clamp(min=1).float()).tolist()
    result = {"loss": float(total_loss) / max(n, 1), "accuracy": float(confusion.diag().sum()) / max(n, 1),
              "per_class_accuracy": per_class, "confusion": confusion.tolist(), "count": n}
    if keep_predictions:
        result["predictions"] = torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long)
        result["confidence"] = torch.cat(confidence) if confidence else torch.zeros(0)
    return result


class Trainer:
    """Minibatch training on tensors already on the device: `Trainer(cfg).fit(model, data)`."""

    def __init__(self, config: TrainConfig, callbacks: list[Callback] = (), control: Control | None = None):
        config.validate()
        self.config = config
        self.callbacks = list(callbacks)
        self.control = control or Control()
        self.device = resolve_device(config.device)
        # Syncing the GPU for every loss costs more than the step itself; the CPU has nothing to wait for.
        self.sync_every = 1 if self.device.type == "cpu" else 25
        # oneDNN's convolutions run about 1.5x faster on NHWC tensors on the CPU (benchmarks/).
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        if self.device.type == "cpu":
            keep_freed_memory()

    def _emit(self, name: str, *args):
        for cb in self.callbacks:
            getattr(cb, name)(*args)

    def batch(self, data: ImageData, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training images `idx` as float input in the trainer's layout, and their labels."""
        # index_select copies whole images; indexing with [] goes element by element (about 10x slower here).
        x = as_input(data.train_images.index_select(0, idx)).contiguous(memory_format=self.memory_format)
        return x, data.train_labels.index_select(0, idx)

    def fit(self, model: LeNet, data: ImageData) -> FitResult:
        cfg, dev, control = self.config, self.device, self.control
        model.to(dev, memory_format=self.memory_format)
        data = data.to(dev)
        n = len(data.train_images)
        batches = cfg.steps_per_epoch(n)
        optimizer = make_optimizer(cfg, model.parameters())
        gen = torch.Generator().manual_seed(cfg.seed)
        epochs: list[EpochMetrics] = []
        steps: list[tuple[int, float]] = []
        status, message, step = "finished", "", 0
        self._emit("on_fit_start", self, batches * cfg.epochs)

        for epoch in range(1, cfg.epochs + 1):
            model.train()
            t0, paused = time.perf_counter(), 0.0
            perm = torch.randperm(n, generator=gen).to(dev)
            loss_sum = torch.zeros((), device=dev)
            correct = torch.zeros((), device=dev, dtype=torch.long)
            pending: list[torch.Tensor] = []
            seen = 0
            for b in range(batches):
                paused += control.wait_if_paused()
                if control.stop_event.is_set():
                    status = "stopped"
                    break
                idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                x, y = self.batch(data, idx)
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                pending.append(loss.detach())
                if len(pending) == self.sync_every or b == batches - 1:
                    values = torch.stack(pending).tolist()
                    pending.clear()
                    bad = next((v for v in values if not math.isfinite(v)), None)
                    if bad is not None:
                        status = "diverged"
                        message = (f"Training diverged: the loss became {bad} in epoch {epoch} "
                                   f"(learning rate {cfg.lr:g}, {cfg.optimizer}). Try a lower learning rate, "
                                   f"e.g. {cfg.lr / 10:g}, or the 'xavier' init.")
                        break
                    first = step + 1
                    for k, v in enumerate(values):
                        steps.append((first + k, v))
                        self._emit("on_step", StepEvent(first + k, epoch, b + 2 - len(values) + k, batches, v))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                seen += len(idx)
                loss_sum += loss.detach() * len(idx)
                correct += (logits.argmax(1) == y).sum()
            if status == "diverged" or seen == 0:
                break
            train_time = time.perf_counter() - t0 - paused
            val = evaluate(model, data.test_images, data.test_labels, should_stop=control.stop_event.is_set)
            metrics = EpochMetrics(epoch, float(loss_sum) / seen, float(correct) / seen,
                                   val["loss"], val["accuracy"], seen / max(train_time, 1e-9),
                                   time.perf_counter() - t0 - paused)
            if status == "stopped" or control.stop_event.is_set():
                status = "stopped"  # a partial epoch is not reported as a finished one
                break
            epochs.append(metrics)
            self._emit("on_epoch_end", metrics)
        if status == "stopped":
            message = (f"Stopped by the user after {step} step{'s' * (step != 1)} "
                       f"({len(epochs)} full epoch{'s' * (len(epochs) != 1)}).")
        elif status == "finished":
            message = f"Finished {cfg.epochs} epochs."
        model.to(memory_format=torch.contiguous_format).eval()
        result = FitResult(status, message, epochs, steps)
        self._emit("on_fit_end", result)
        return result


def build_model(config: TrainConfig) -> LeNet:
    """The model for a run, initialised from the run's seed (so a seed fixes everything)."""
    torch.manual_seed(config.seed)
    return LeNet(config.model)


@dataclass
class Snapshot:
    """A consistent copy of a job's state for drawing."""

    status: str                 # loading | running | paused | finished | stopped | diverged | failed
    message: str
    config: TrainConfig
    device: str
    step: int
    total_steps: int
    epoch: int
    steps: list[tuple[int, float]]
    epochs: list[EpochMetrics]
    samples_per_s: float
    eta_s: float | None
    elapsed_s: float

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "diverged", "failed")

    @property
    def progress(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0


_LIVE_JOBS: "weakref.WeakSet[TrainingJob]" = weakref.WeakSet()


@atexit.register
def _stop_live_jobs(timeout: float = 5.0) -> None:
    """Stop the jobs still training when the interpreter exits, and wait for them.

    A job's thread is a daemon, so nothing else waits for it; left in torch's code while
    the interpreter shuts down, it aborted the process ("terminate called without an
    active exception", exit code 134), e.g. a Streamlit server stopped during a run."""
    jobs = [job for job in list(_LIVE_JOBS) if job.alive]
    for job in jobs:
        job.stop()
    deadline = time.monotonic() + timeout
    for job in jobs:
        job.join(max(deadline - time.monotonic(), 0.0))


class TrainingJob(Callback):
    """Runs one training in a background thread. Only this object is shared with
    the caller; every read goes through `snapshot()` under a lock.

    Speed: a thread that has run one of torch's parallel CPU operations keeps its
    OpenMP workers until it exits, and while they outnumber the cores OpenMP
    spin-waits less between operations. Training here in a job of a process whose
    main thread had loaded the data with torch's default threads ran at about 0.8
    of the speed it had when the main thread was set to one thread
    (`torch.set_num_threads(1)`) before any work (see the README)."""

    def __init__(self, config: TrainConfig, data: ImageData | None = None, model: LeNet | None = None,
                 data_dir=None, name: str = ""):
        config.validate()
        self.config, self.name = config, name
        self._data, self._data_dir = data, data_dir
        self.model = model if model is not None else build_model(config)
        self.control = Control()
        self._lock = threading.Lock()
        self._status, self._message = "loading", "Loading the data set..."
        self._steps: list[tuple[int, float]] = []
        self._epochs: list[EpochMetrics] = []
        self._step = self._epoch = self._total = 0
        self._rate = 0.0
        self._t_start = self._t_end = None
        self._rate_mark: tuple[float, int] | None = None
        self.device = resolve_device(config.device)
        self.classes: tuple[str, ...] = DATASETS[config.dataset][2]
        self.result: FitResult | None = None
        self._thread = threading.Thread(target=self._run, name=f"lenet-train-{name}", daemon=True)

    # -- control -------------------------------------------------------
    def start(self) -> "TrainingJob":
        self._t_start = time.perf_counter()
        _LIVE_JOBS.add(self)
        self._thread.start()
        return self

    def pause(self):
        self.control.pause()

    def resume(self):
        self.control.resume()

    def stop(self):
        self.control.stop()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the thread ----------------------------------------------------
    def _run(self):
        try:
            data = self._data or load_dataset(self.config.dataset, self._data_dir)
            self.classes = data.classes
            with self._lock:
                self._status, self._message = "running", ""
            self.result = Trainer(self.config, [self], self.control).fit(self.model, data)
        except Exception as e:  # the UI shows the message; the thread must never die silently
            with self._lock:
                self._status, self._message = "failed", str(e) or type(e).__name__
        finally:
            self._t_end = time.perf_counter()

    def on_fit_start(self, trainer, total_steps):
        with self._lock:
            self._total = total_steps
            self._rate_mark = (time.perf_counter(), 0)

    def on_step(self, event: StepEvent):
        now = time.perf_counter()
        with self._lock:
            self._steps.append((event.step, event.loss))
            self._step, self._epoch = event.step, event.epoch
            t, s = self._rate_mark
            if now - t >= 1.0:  # a rate over the last second or so, not skewed by pauses
                self._rate = (event.step - s) * self.config.batch_size / (now - t)
                self._rate_mark = (now, event.step)

    def on_epoch_end(self, metrics: EpochMetrics):
        with self._lock:
            self._epochs.append(metrics)

    def on_fit_end(self, result: FitResult):
        with self._lock:
            self._status, self._message = result.status, result.message

    def snapshot(self) -> Snapshot:
        with self._lock:
            status = self._status
            if status == "running" and self.control.paused:
                status = "paused"
            if self._rate_mark and status == "paused":
                self._rate_mark = (time.perf_counter(), self._step)
            rate = self._rate
            eta = ((self._total - self._step) * self.config.batch_size / rate
                   if rate > 0 and status in ("running", "paused") else None)
            end = self._t_end or time.perf_counter()
            return Snapshot(status, self._message, self.config, device_label(self.device), self._step,
                            self._total, self._epoch, list(self._steps), list(self._epochs), rate, eta,
                            end - self._t_start if self._t_start else 0.0)
