"""Training one run folder, in whichever process an executor runs it: a worker of the local pool,
a Ray worker, or the CLI itself. Everything it does goes into the folder (runs.py), so whoever
shows the run needs nothing from this process."""
from __future__ import annotations

import errno
import sys
import threading
import time
import traceback

from .checkpoint import Checkpoint, CheckpointError
from .data import DataUnavailableError, ImageData, load_dataset
from .recording import recorders
from .loss_curve import LossCurve
from .processes import this_process
from .runs import HEARTBEAT_S, Run
from .settings import ConfigError
from .train import (Callback, EpochMetrics, FitResult, Trainer, TrainState, build_model, device_label,
                    plateau_note)

LIVE_EVERY_S = 0.5   # how often a training run's curve and status reach its folder
HEALTH_LIVE_EVERY_S = 3.0  # how often its health charts change there: each change is three charts redrawn
MAX_HAND_STEPS = 100_000  # steps one request by hand may ask for (a control file is read from disk)

_datasets: dict[tuple, ImageData] = {}
_datasets_lock = threading.Lock()


def dataset(name: str, data_dir=None) -> ImageData:
    """A data set, loaded once per process: a pool's worker keeps it between runs."""
    with _datasets_lock:
        key = (name, str(data_dir))
        if key not in _datasets:
            _datasets[key] = load_dataset(name, data_dir)
        return _datasets[key]


class FolderControl:
    """The trainer's pause/stop switches, the optimizer settings wanted and the steps asked for by
    hand, read from the run's control.json (at most every `poll_s`), or a stop from this process
    (`stop_event`: a signal, the pool shutting down)."""

    def __init__(self, run: Run, stop_event: threading.Event | None = None, heartbeat=lambda: None,
                 poll_s: float = 0.1):
        self.run, self.stop_event, self.heartbeat, self.poll_s = run, stop_event, heartbeat, poll_s
        self._checked, self._mtime, self._ctl = 0.0, None, {}
        # Steps asked for by hand before this trainer started were for one that is gone: not taken again.
        ask = self._refresh().get("advance")
        self._advanced = ask.get("id") if isinstance(ask, dict) else None

    def _refresh(self) -> dict:
        now = time.monotonic()
        if now - self._checked >= self.poll_s:
            self._checked = now
            try:
                mtime = (self.run.path / "control.json").stat().st_mtime_ns
            except OSError:
                mtime = None
            if mtime != self._mtime:
                self._mtime, self._ctl = mtime, self.run.control()
        return self._ctl

    @property
    def stopped_by_process(self) -> bool:
        """A stop that came from the server shutting down, not from the run's owner."""
        return self.stop_event is not None and self.stop_event.is_set() or self._ctl.get("by") == "shutdown"

    def stop_requested(self) -> bool:
        return bool(self._refresh().get("stop")) or self.stopped_by_process

    def paused(self) -> bool:
        return bool(self._refresh().get("pause")) and not self.stop_requested()

    def settings(self) -> dict:
        wanted = self._refresh().get("settings")
        return wanted if isinstance(wanted, dict) else {}  # the trainer checks each value's bounds

    def _steps_by_hand(self) -> int | str | None:
        ask = self._ctl.get("advance")
        if not isinstance(ask, dict) or ask.get("id") == self._advanced:
            return None
        self._advanced = ask.get("id")
        steps = ask.get("steps")
        if steps == "epoch" or isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= MAX_HAND_STEPS:
            return steps
        return None

    def wait_while_paused(self) -> int | str | None:
        beat = time.monotonic()
        while self.paused():
            if steps := self._steps_by_hand():
                return steps
            time.sleep(self.poll_s / 2)
            if time.monotonic() - beat >= HEARTBEAT_S:
                self.heartbeat()
                beat = time.monotonic()
        return None


class RunRecorder(Callback):
    """Writes a training run into its folder as it goes: steps and live curve every LIVE_EVERY_S,
    epochs and an atomic checkpoint at each epoch's end, the status at every change."""

    def __init__(self, run: Run, data: ImageData, control: FolderControl, curve: LossCurve, health=None):
        self.run, self.data, self.control, self.curve, self.health = run, data, control, curve, health
        self.pending: list[tuple[int, list[float]]] = []
        self.epochs = [m.to_dict() for m in run.epochs()]
        self.last_flush = 0.0
        self.paused_s, self.pause_began = 0.0, None
        self.health_live, self.health_written = [], 0.0
        self.status = "running"
        self.changes: list[dict] = []

    def on_fit_start(self, trainer, state):
        self.config, self.trainer = trainer.config, trainer
        self.t0, self.steps_at_start, self.step = time.monotonic(), state.step, state.step
        self.changes = list(state.changes)  # as far as the checkpoint it carries on from
        self.total = trainer.config.steps_per_epoch(len(self.data.train_images)) * trainer.config.epochs
        self.run.set_status("running", "", started=time.time(), worker=this_process(),
                            device=device_label(trainer.device), total_steps=self.total, steps_done=state.step,
                            epochs_done=state.epoch, steps_at_start=state.step, train_seconds=0.0,
                            changes=self.changes)
        self.write(force=True)

    def on_steps(self, first_step, losses, epoch):
        self.pending.append((first_step, losses))
        for i, v in enumerate(losses):
            self.curve.add(first_step + i, v)
        self.step = first_step + len(losses) - 1
        if time.monotonic() - self.last_flush >= LIVE_EVERY_S or first_step == self.steps_at_start + 1:
            self.write()

    def on_pause(self, paused):
        if paused:
            if self.status != "paused":  # else paused again after steps taken by hand: one pause goes on
                self.status, self.pause_began = "paused", time.monotonic()
        else:
            self.status, self.paused_s = "running", self.paused_s + time.monotonic() - self.pause_began
        self.write(force=True)

    def on_setting_change(self, change: dict, state: TrainState):
        self.changes.append(change)
        self.write(force=True, changes=self.changes, setting_applied=time.time())

    def on_hand_steps(self, state: TrainState, model):
        self.save(model, state)  # the filters and maps shown are those after the steps
        self.write(force=True)

    def on_epoch_end(self, metrics: EpochMetrics, state: TrainState, model):
        self.epochs.append(metrics.to_dict())
        self.flush_steps()
        self.run.append_epoch(metrics)
        self.save(model, state)
        # While it runs, the status message is what a viewer should know now (e.g. a plateau).
        note = plateau_note([EpochMetrics(**e) for e in self.epochs], model.config.num_classes)
        self.write(force=True, message=note, epochs_done=state.epoch)

    def on_fit_end(self, result: FitResult):
        self.flush_steps()
        final = {"test_accuracy": result.final["accuracy"], "test_loss": result.final["loss"],
                 "per_class_accuracy": dict(zip(self.data.classes, result.final["per_class_accuracy"]))
                 } if result.final else {}
        if result.reason != "exploded":  # blown-up weights are worth nothing: keep the last epoch's
            self.save(self.trainer.model, result.state, final)
        message = result.message
        if result.status == "stopped" and self.control.stopped_by_process:
            message = (f"Stopped when its server shut down, after {result.state.step:,} steps; "
                       "Resume carries it on from there.")
        self.status = result.status
        self.write(force=True, message=message, reason=result.reason, final=final, ended=time.time(),
                   epochs_done=result.state.epoch)

    # -- writing ------------------------------------------------------------------------
    def save(self, model, state: TrainState, final: dict | None = None):
        ckpt = Checkpoint(self.config, model, self.data.name, self.data.classes, metrics=final or {},
                          training=state, epochs=[EpochMetrics(**e) for e in self.epochs])
        self.run.save_checkpoint(ckpt)

    def flush_steps(self):
        for first, losses in self.pending:
            self.run.append_steps(first, losses)
        self.pending.clear()

    def write(self, force: bool = False, message: str | None = None, **fields):
        now = time.monotonic()
        if not force and now - self.last_flush < LIVE_EVERY_S:
            return
        self.last_flush = now
        self.flush_steps()
        paused = self.paused_s + (now - self.pause_began if self.status == "paused" else 0)
        train_s = now - self.t0 - paused
        done_here = self.step - self.steps_at_start
        rate = done_here * self.config.batch_size / train_s if train_s > 0 and done_here else None
        if self.health and (force or now - self.health_written >= HEALTH_LIVE_EVERY_S):
            self.health_live, self.health_written = list(self.health.live()), now
        self.run.write_live({"curve": self.curve.to_dict(), "epochs": self.epochs, "updated": time.time(),
                             "health": self.health_live, "changes": self.changes})
        self.run.set_status(self.status, message, steps_done=self.step, train_seconds=train_s,
                            samples_per_s=rate, **fields)

    def heartbeat(self):
        self.write(force=True)


def train_run(run_dir, *, data_dir=None, callbacks=(), stop_event: threading.Event | None = None,
              executor: str = "inline", sync_every: int | None = None, record: bool = True) -> str:
    """Train the run in `run_dir` to its planned epochs, from where it stands (a new run, a stopped
    or interrupted one, one continued from another run's weights); returns its final status.
    Returns "busy" without touching it when another live process trains it, "skipped" when it is no
    longer queued. With `record`, the run
    also records its probes, layer health and TensorBoard scalars (recording.py)."""
    run = Run(run_dir)
    if not run.claim(executor):
        return "busy"
    try:
        if run.status().get("status") != "queued":  # taken and trained meanwhile (another server sharing the folder)
            return "skipped"
        if run.control().get("stop"):  # stopped while it waited in the queue
            if run.status().get("status") == "queued":
                run.set_status("stopped", "Stopped before it started.", ended=time.time())
            return "stopped"
        config = run.config()
        data = dataset(config.dataset, data_dir)
        state, model = None, build_model(config)
        ckpt = run.resume_point()  # None: from the start; CheckpointError: lost weights, said in words
        if ckpt is not None:  # carry on: a stopped, interrupted or continued run
            model.load_state_dict(ckpt.model.state_dict())
            state = ckpt.training or TrainState(epoch=len(ckpt.epochs))
        # The record made to agree with the weights: what a killed trainer wrote after its checkpoint
        # goes, damaged lines are left out and said, epochs the file lost come back from the checkpoint.
        repaired = run.truncate(state.step if state else 0, state.epoch if state else 0, ckpt.epochs if ckpt else [])
        if repaired or run.info().repaired:
            run.set_status(run.info().status, None, repaired=repaired)
        curve = LossCurve.of(*run.steps())
        control = FolderControl(run, stop_event)
        extra, health = recorders(run, data) if record else ([], None)
        recorder = RunRecorder(run, data, control, curve, health)
        control.heartbeat = recorder.heartbeat
        Trainer(config, [*extra, recorder, *callbacks], control, sync_every).fit(model, data, state)
        return recorder.status
    except DataUnavailableError as e:
        return _failed(run, str(e))
    except (ConfigError, CheckpointError) as e:
        return _failed(run, f"This run cannot be trained: {e}")
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return _failed(run, f"The disk is full ({e.strerror}): its last finished epoch is kept, and it carries on "
                                "by itself once there is room again (or press Resume).", reason="disk-full")
        traceback.print_exc()
        return _failed(run, f"Training failed: it could not write its folder ({e.strerror or e}).", reason="io")
    except Exception as e:  # the folder must say why; the process goes on to its next run
        traceback.print_exc()
        return _failed(run, f"Training failed: {type(e).__name__}: {e}")
    finally:
        run.release()


def _failed(run: Run, message: str, reason: str = "") -> str:
    """Mark the run failed with why. The write itself may fail (a full disk): then it is said on
    stderr, and the run reads as interrupted once its claim is released; the worker goes on."""
    try:
        run.set_status("failed", message, reason=reason, ended=time.time())
    except OSError as e:
        print(f"could not mark {run.path} as failed ({e}): {message}", file=sys.stderr, flush=True)
    return "failed"
