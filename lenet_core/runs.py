"""Run folders: every run, from the CLI or the app, is a folder under the runs root from the moment
it is asked for, and the folder is the run's whole truth. A reload, a second tab, a restarted
server or another machine reads the same state from it.

    config.json    the settings (TrainConfig), written once
    run.json       name, owner, where it started from, when it was asked for
    status.json    queued | running | paused | finished | stopped | diverged | failed | interrupted,
                   with its message and progress; rewritten (atomically) by whoever drives the run
    control.json   what the user asked for: pause, stop, optimizer settings, steps by hand (the worker polls it)
    claim.json     which process trains it now (created exclusively: one trainer per run)
    steps.csv      the loss of every step, appended as it trains
    epochs.jsonl   the metrics of every epoch, appended
    live.json      what a page draws: the loss curve decimated to a few hundred points, epochs, health
    checkpoint.pt  weights, settings and the state to carry on from, written at each epoch's end and at stop

Folders written before run folders existed (config.json, run.json, metrics.json, checkpoint.pt)
still load, as ended runs."""
from __future__ import annotations

import collections
import errno
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import Checkpoint, CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from .run_files import (Problems, epoch_row, one_per_epoch, read_epochs, read_health, read_json,
                        read_steps)
from .loss_curve import LossCurve
from .model import PRESETS, nearest_preset
from .processes import process_alive, this_process
from .settings import ConfigError, in_words
from .train import EpochMetrics, TrainConfig

log = logging.getLogger(__name__)
FORMAT = "lenet-lab/run"
STATUSES = ("queued", "running", "paused", "finished", "stopped", "diverged", "failed", "interrupted")
LIVE = ("queued", "running", "paused")
RESUMABLE = ("stopped", "interrupted", "failed")
HEARTBEAT_S = 5.0          # a training process rewrites status.json at least this often
STALE_AFTER_S = 60.0       # a run on another machine silent this long is taken as interrupted
UPLOAD_STEP_ROWS = 5_000   # the most loss-per-step rows an uploaded checkpoint's run folder keeps


def runs_root() -> Path:
    return Path(os.environ.get("LENET_RUNS_DIR") or "runs")


def _write_json(path: Path, obj) -> None:
    data = json.dumps(obj, indent=1).encode()
    atomic_write(path, lambda f: f.write(data))


def _read_json(path: Path, default=None):
    """A JSON file outside a Run's own reading (e.g. a claim), missing or damaged as `default`."""
    return read_json(path, Problems(), default)


NAME_MAX = 80


def clean_name(text) -> str:
    """A run's name as plain text, whoever wrote it: printable, one line, at most NAME_MAX characters."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in str(text)[:10 * NAME_MAX]).split())
    return text[:NAME_MAX]


PLAIN = ("activation", "optimizer", "dataset")  # settings whose value says what they are: "relu", not "act relu"


def describe(config: TrainConfig) -> str:
    """A name that says what a run is: its nearest preset and what differs, e.g. "classic · lr 0.3"."""
    base = nearest_preset(config.model)
    differs = {**in_words(config.model, PRESETS[base]), **in_words(config, TrainConfig(), skip=("device",))}
    return " · ".join([base] + [text if name in PLAIN else f"{meta.short} {text}"
                                for name, (meta, text) in differs.items()])


@dataclass
class RunInfo:
    """What lists and tables show of a run: run.json and status.json, read together."""

    path: Path
    name: str
    config: TrainConfig
    status: str
    message: str = ""
    reason: str = ""
    owner: str | None = None
    owner_name: str = ""
    created: float = 0.0
    started: float | None = None
    ended: float | None = None
    updated: float | None = None
    epochs_done: int = 0
    steps_done: int = 0
    total_steps: int = 0
    samples_per_s: float | None = None
    train_seconds: float = 0.0
    device: str = ""
    origin: dict = field(default_factory=dict)
    final: dict = field(default_factory=dict)
    legacy: bool = False
    repaired: list = field(default_factory=list)   # what resuming found damaged and mended, one line each
    changes: list = field(default_factory=list)  # settings changed while it trained (TrainState.changes)

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def test_accuracy(self) -> float | None:
        return self.final.get("test_accuracy")

    @property
    def eta_s(self) -> float | None:
        """Time left at the run's average speed so far (steady, unlike the last second's rate)."""
        if self.status != "running" or not self.steps_done or not self.train_seconds or not self.total_steps:
            return None
        done_here = self.steps_done - self.origin.get("steps", 0)
        if done_here <= 0:
            return None
        return (self.total_steps - self.steps_done) * self.train_seconds / done_here

    def to_dict(self) -> dict:
        return {"path": str(self.path), "id": self.id, "name": self.name, "status": self.status,
                "message": self.message, "epochs_done": self.epochs_done, "epochs": self.config.epochs,
                "steps_done": self.steps_done, "test_accuracy": self.test_accuracy, "owner_name": self.owner_name,
                "created": self.created, "config": self.config.to_dict(), "changes": self.changes}


class Run:
    """One run folder. Cheap to make: nothing is read until asked for. Every file is read through
    run_files' tolerant readers: what is damaged is kept out and said in `problems` (file -> why)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.problems = Problems()

    def __repr__(self):
        return f"Run({str(self.path)!r})"

    def __eq__(self, other):
        return isinstance(other, Run) and self.path.resolve() == other.path.resolve()

    def __hash__(self):
        return hash(self.path.resolve())

    @property
    def id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, config: TrainConfig, root: str | os.PathLike | None = None, *, name: str | None = None,
               owner: str | None = None, owner_name: str = "", origin: dict | None = None,
               path: str | os.PathLike | None = None) -> Run:
        """A new queued run's folder (under `root`, or at `path`), written before anything trains."""
        config.validate()
        if path is None:
            root = Path(root) if root is not None else runs_root()
            path = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        run = cls(path)
        if free_mb(run.path) < min_free_mb():
            raise DiskFullError(errno.ENOSPC, disk_full_message(run.path))
        existed = run.path.exists()
        try:
            run.path.mkdir(parents=True, exist_ok=True)
            now = time.time()
            _write_json(run.path / "config.json", config.to_dict())
            _write_json(run.path / "run.json", {"format": FORMAT, "version": 2,
                                                "name": clean_name(name or "") or describe(config), "owner": owner,
                                                "owner_name": owner_name, "created": now, "origin": origin or {}})
            run.set_status("queued", "Waiting for a free worker.",
                           epochs_done=origin.get("epochs", 0) if origin else 0,
                           steps_done=origin.get("steps", 0) if origin else 0)
        except OSError as e:  # a disk that fills as it is written: no half-made run is left behind
            if not existed:
                shutil.rmtree(run.path, ignore_errors=True)
            else:
                for name_ in ("config.json", "run.json", "status.json"):
                    (run.path / name_).unlink(missing_ok=True)
            if e.errno == errno.ENOSPC:
                raise DiskFullError(errno.ENOSPC, disk_full_message(run.path)) from None
            raise
        return run

    # -- reading ---------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.path / "config.json").is_file()

    def config(self) -> TrainConfig:
        """The run's settings, from config.json, or from its checkpoint (which holds them too) where
        config.json is damaged."""
        d = read_json(self.path / "config.json", self.problems)
        try:
            if d is not None:
                return TrainConfig.from_dict(d)
        except ConfigError as e:
            self.problems["config.json"] = f"damaged: {e}"
        why = self.problems.get("config.json", "missing")
        if self.has_checkpoint():
            try:
                return load_checkpoint(self.path / "checkpoint.pt", name="checkpoint.pt").config
            except CheckpointError:
                pass
        raise CheckpointError(f"{self.path} is a run folder this version cannot read: its config.json is {why}, "
                              "and it has no sound checkpoint.pt to take the settings from")

    def meta(self) -> dict:
        return read_json(self.path / "run.json", self.problems, {})

    def status(self) -> dict:
        return read_json(self.path / "status.json", self.problems, {})

    @property
    def legacy(self) -> bool:
        return not (self.path / "status.json").exists() and (self.path / "metrics.json").exists()

    def info(self) -> RunInfo:
        """The run as lists show it. A run marked running or paused whose trainer is gone reads as
        interrupted (a killed server or worker leaves no chance to write that down)."""
        config, meta = self.config(), self.meta()
        if self.legacy:  # a folder from before run folders: run.json held status and final metrics
            epochs = self.epochs()
            return RunInfo(self.path, self.path.name, config, meta.get("status", "finished"),
                           created=self.path.stat().st_mtime, final=meta.get("final") or {},
                           epochs_done=len(epochs), steps_done=int(self.steps()[0][-1]) if len(epochs) else 0,
                           legacy=True)
        st = self.status()
        status, message = st.get("status"), st.get("message", "")
        if status not in STATUSES:  # a damaged status.json: the run's files say the rest
            status = "failed"
            message = (f"Its status.json is {self.problems.get('status.json', 'missing')}. Resume carries it on "
                       "from its last checkpoint.")
            st = {k: v for k, v in st.items() if k in ("epochs_done", "steps_done", "total_steps")}
        if not isinstance(message, str):
            message = ""
        if status in ("running", "paused") and not self.trainer_alive(st):
            status = "interrupted"
            message = _lost_message("interrupted", "the process training it stopped (killed, or its machine "
                                                   "went away)", st.get("epochs_done", 0))
        def get(d: dict, key: str, kind, default):  # a field of another type (another version, damage) reads as unset
            value = d.get(key, default)
            return value if isinstance(value, kind) and not isinstance(value, bool) else default

        number = (int, float)
        return RunInfo(self.path, clean_name(get(meta, "name", str, "")) or self.path.name, config, status, message[:2000],
                       get(st, "reason", str, ""), get(meta, "owner", str, None), get(meta, "owner_name", str, ""),
                       get(meta, "created", number, 0.0), get(st, "started", number, None),
                       get(st, "ended", number, None), get(st, "updated", number, None), get(st, "epochs_done", int, 0),
                       get(st, "steps_done", int, 0), get(st, "total_steps", int, 0),
                       get(st, "samples_per_s", number, None), get(st, "train_seconds", number, 0.0),
                       get(st, "device", str, ""), get(meta, "origin", dict, {}), get(st, "final", dict, {}),
                       repaired=[str(r)[:300] for r in get(st, "repaired", list, [])][:20],
                       changes=setting_changes(st.get("changes")))

    def trainer_alive(self, status: dict | None = None) -> bool:
        """Whether a process is training this run now (its claim's process runs, or, on another
        machine, it has written its status within STALE_AFTER_S)."""
        claim = _read_json(self.path / "claim.json")
        if claim is None:
            return False
        alive = process_alive(claim)
        if alive is None:
            updated = (status or self.status()).get("updated") or 0
            return time.time() - updated < STALE_AFTER_S
        return alive

    def steps(self) -> tuple[np.ndarray, np.ndarray]:
        """(step numbers, losses) of every step recorded, as arrays, each step once."""
        if self.legacy:
            rows = read_json(self.path / "metrics.json", self.problems, {}).get("steps", [])
            try:
                table = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
            except (TypeError, ValueError):
                self.problems["metrics.json"] = "its steps are not (step, loss) pairs"
                table = np.zeros((0, 2))
            return table[:, 0].astype(np.int64), table[:, 1]
        return read_steps(self.path / "steps.csv", self.problems)

    def epochs(self) -> list[EpochMetrics]:
        """The metrics of every finished epoch recorded, each epoch once, in order."""
        if self.legacy:
            rows = read_json(self.path / "metrics.json", self.problems, {}).get("epochs", [])
            kept = [epoch_row(r) for r in rows] if isinstance(rows, list) else []
            return one_per_epoch([m for m in kept if isinstance(m, EpochMetrics)])
        return read_epochs(self.path / "epochs.jsonl", self.problems)

    def health(self) -> list[dict]:
        """The layer health readings (recording.Health), in step order."""
        return read_health(self.path / "health.jsonl", self.problems)

    def live(self) -> dict:
        """What a page draws. Missing or damaged (and not merely not written yet), it is made again
        from the steps and epochs recorded."""
        live = read_json(self.path / "live.json", self.problems, None)
        if live is not None and isinstance(live.get("curve", {}), dict) and isinstance(live.get("epochs", []), list):
            return live
        if live is not None:
            self.problems["live.json"] = "damaged: not the curves a page draws"
        if not (self.path / "steps.csv").exists() and not self.legacy:
            return {}
        return {"curve": LossCurve.of(*self.steps()).to_dict(), "epochs": [m.to_dict() for m in self.epochs()],
                "health": self.health()[-300:]}

    def control(self) -> dict:
        return read_json(self.path / "control.json", self.problems, {})

    def check(self, deep: bool = True) -> list[str]:
        """Every file of the run read once (the checkpoint and probes only when `deep`): what is
        damaged and how, one line each (empty: all sound)."""
        self.problems.clear()
        try:
            self.info()
        except CheckpointError:
            pass
        self.control(), self.steps(), self.epochs(), self.health(), self.live()
        if not deep:
            return self.problems.lines()
        if self.has_checkpoint():
            try:
                load_checkpoint(self.path / "checkpoint.pt", name="checkpoint.pt")
            except CheckpointError as e:
                self.problems["checkpoint.pt"] = str(e).removeprefix("checkpoint.pt ")
        elif not self.legacy and (self.epochs() or self.status().get("epochs_done")):
            self.problems["checkpoint.pt"] = "missing: the weights of its finished epochs are gone"
        if (self.path / "probes.pt").exists():
            from .probes import load_probes

            try:
                load_probes(self.path / "probes.pt")
            except (ValueError, OSError) as e:
                self.problems["probes.pt"] = str(e).replace(str(self.path / "probes.pt"), "").strip(" :")
        return self.problems.lines()

    def has_checkpoint(self) -> bool:
        return (self.path / "checkpoint.pt").is_file()

    def resume_point(self) -> Checkpoint | None:
        """The checkpoint a run carries on from, None for a run that has not finished an epoch (it
        starts again from its first step). CheckpointError, saying what to do, where the weights of
        finished epochs are missing or damaged."""
        if self.has_checkpoint():
            try:
                return self.load_checkpoint()
            except CheckpointError as e:
                why = str(e)
        elif self.legacy or self.epochs() or self.status().get("epochs_done"):
            why = "its checkpoint.pt is missing"
        else:
            return None
        raise CheckpointError(f"{why}, so the weights of its finished epochs are gone; train it again from the "
                              f"start with the same settings (`lenet resume {self.path} --from-scratch`, "
                              "or Start on the Train page)")

    def restart(self) -> None:
        """Forget everything trained, keeping the settings and the name: the run starts from step 0."""
        for name in ("checkpoint.pt", "probes.pt", "live.json", "health.jsonl"):
            (self.path / name).unlink(missing_ok=True)
        for old in self.path.glob("events.out.tfevents.*"):
            old.unlink(missing_ok=True)
        self.truncate(0, 0)
        self.set_status("queued", "Waiting to train again from the start.", epochs_done=0, steps_done=0,
                        final={}, repaired=[])

    def load_checkpoint(self) -> Checkpoint:
        ckpt = load_checkpoint(self.path / "checkpoint.pt", name=f"{self.path.name}/checkpoint.pt")
        ckpt.epochs = self.epochs() if not ckpt.epochs else ckpt.epochs
        return ckpt

    # -- writing -----------------------------------------------------------------------
    def set_status(self, status: str, message: str | None = None, **fields) -> dict:
        """Merge `fields` into status.json, with `status` and `message`; atomic."""
        assert status in STATUSES, status
        st = self.status()
        st.update(fields, status=status, updated=time.time())
        if message is not None:
            st["message"] = message
        _write_json(self.path / "status.json", st)
        return st

    def mark_lost(self, why: str, status: str = "interrupted", reason: str = "killed") -> None:
        """Its trainer is gone (`why`, in words): a run still marked live says so, once, keeping its last
        finished epoch for Resume. A write that fails (a full disk) is logged, never raised: whoever
        calls this (a pool's monitor) must go on for the other runs."""
        try:
            st = self.status()
            if st.get("status") in LIVE:
                self.set_status(status, _lost_message(status, why, st.get("epochs_done", 0)), reason=reason,
                                ended=time.time())
        except OSError as e:
            log.warning("could not mark %s as %s (%s); it reads as interrupted once its claim is gone",
                        self.path, status, e)
        self.release()

    def request(self, **changes) -> None:
        """Ask the trainer to pause (pause=True), resume (pause=False) or stop (stop=True)."""
        ctl = self.control()
        ctl.update(changes, updated=time.time())
        _write_json(self.path / "control.json", ctl)

    def requeue(self, message: str = "Waiting to carry on.") -> None:
        """Queue an ended run to carry on (Resume): earlier pause and stop requests are dropped."""
        _write_json(self.path / "control.json", {"pause": False, "stop": False, "updated": time.time()})
        self.set_status("queued", message)

    def change_settings(self, **values: float) -> dict[str, float]:
        """Ask the trainer to use these optimizer settings (lr, momentum where it has one) from its
        next step on; ConfigError for an ended run or a value it cannot take. Returns them as sent."""
        from .train import check_live

        status = self.info().status
        if status not in LIVE:
            raise ConfigError("run", f"it has {'ended' if status != 'interrupted' else 'been interrupted'} "
                                     f"({status}); settings change only while it is queued, training or paused")
        if not values:
            raise ConfigError("settings", "nothing to change")
        values = check_live(self.config(), values)
        ctl = self.control()
        wanted = ctl.get("settings") if isinstance(ctl.get("settings"), dict) else {}
        self.request(settings={**wanted, **values}, settings_asked=time.time())
        return values

    def step_by_hand(self, steps: int | str = 1) -> None:
        """A paused run takes `steps` steps ("epoch": to its epoch's end), then waits paused again."""
        if self.info().status != "paused":
            raise ConfigError("run", "only a paused run is stepped by hand")
        self.request(advance={"id": secrets.token_hex(4), "steps": steps, "asked": time.time()})

    def rename(self, name: str) -> None:
        meta = self.meta()
        meta["name"] = clean_name(name) or meta.get("name") or self.path.name
        _write_json(self.path / "run.json", meta)

    def claim(self, executor: str) -> bool:
        """Take the run for this process: False if another live process has it. A claim left by a
        process that died is broken."""
        path = self.path / "claim.json"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                if self.trainer_alive():
                    return False
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({**this_process(), "executor": executor, "claimed": time.time()}, f)
            return True
        return False

    def release(self) -> None:
        (self.path / "claim.json").unlink(missing_ok=True)

    def append_steps(self, first_step: int, losses: list[float]) -> None:
        path = self.path / "steps.csv"
        new = not path.exists()
        with open(path, "a") as f:
            if new:
                f.write("step,loss\n")
            f.write("".join(f"{first_step + i},{v:.6g}\n" for i, v in enumerate(losses)))

    def append_epoch(self, metrics: EpochMetrics) -> None:
        with open(self.path / "epochs.jsonl", "a") as f:
            f.write(json.dumps(metrics.to_dict()) + "\n")

    def truncate(self, step: int, epoch: int, epochs: list[EpochMetrics] = ()) -> list[str]:
        """Make the record agree with the checkpoint a run carries on from (`step`, `epoch`): what a
        killed trainer recorded after it is dropped, each step and epoch is kept once, damaged lines
        are left out, and epochs the file lost are put back from `epochs` (the checkpoint's own).
        Returns what was damaged and repaired, one line each."""
        self.problems.clear()
        s, v = self.steps()
        keep = s <= step
        lines = "step,loss\n" + "".join(f"{a},{b:.6g}\n" for a, b in zip(s[keep], v[keep]))
        atomic_write(self.path / "steps.csv", lambda f: f.write(lines.encode()))
        kept = {m.epoch: m for m in self.epochs() if m.epoch <= epoch}
        restored = [m.epoch for m in epochs if m.epoch <= epoch and m.epoch not in kept]
        kept.update({m.epoch: m for m in epochs if m.epoch <= epoch})
        rows = "".join(json.dumps(m.to_dict()) + "\n" for _, m in sorted(kept.items()))
        atomic_write(self.path / "epochs.jsonl", lambda f: f.write(rows.encode()))
        health = "".join(json.dumps(r) + "\n" for r in self.health() if r["step"] <= step)
        atomic_write(self.path / "health.jsonl", lambda f: f.write(health.encode()))
        notes = self.problems.lines()
        if restored:
            notes.append(f"epochs.jsonl: epoch{'s' * (len(restored) > 1)} {', '.join(map(str, restored))} put back "
                         "from checkpoint.pt")
        missing = sorted(set(range(1, epoch + 1)) - set(kept))
        if missing:
            notes.append(f"epochs.jsonl: the metrics of epoch{'s' * (len(missing) > 1)} "
                         f"{', '.join(map(str, missing))} are lost (the weights after them are kept)")
        return notes

    def write_live(self, live: dict) -> None:
        _write_json(self.path / "live.json", live)

    def save_checkpoint(self, ckpt: Checkpoint) -> None:
        save_checkpoint(self.path / "checkpoint.pt", ckpt, with_training=True)


def setting_changes(rows) -> list[dict]:
    """The settings changes a status file lists, those that are sound: {step, setting, old, value}."""
    out = []
    for c in rows if isinstance(rows, list) else []:
        if (isinstance(c, dict) and isinstance(c.get("step"), int) and isinstance(c.get("setting"), str)
                and all(isinstance(c.get(k), (int, float)) for k in ("old", "value"))):
            out.append({"step": c["step"], "setting": c["setting"], "old": c["old"], "value": c["value"]})
    return out


def describe_changes(changes: list[dict]) -> str:
    """The changes in words, as the runs table shows them: "lr 0.1 -> 0.9 at step 1,200"."""
    return "; ".join(f"{c['setting']} {c['old']:g} -> {c['value']:g} at step {c['step']:,}" for c in changes)


def _lost_message(status: str, why: str, epochs_done: int) -> str:
    return (f"{status.capitalize()}: {why} during epoch {epochs_done + 1}. Its last finished epoch "
            f"({epochs_done}) is kept: Resume carries it on from there.")


def min_free_mb() -> int:
    """Free disk a run needs to start (LENET_MIN_FREE_MB): below it, starting and uploading are refused."""
    return int(os.environ.get("LENET_MIN_FREE_MB") or 100)


def free_mb(path: str | os.PathLike) -> float:
    """Free space on the disk that holds `path` (the nearest folder that exists), in MB."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free / 2**20
    except OSError:
        return 0.0


class DiskFullError(OSError):
    """No room on the runs' disk: a message for the user, not a traceback."""


def disk_full_message(path) -> str:
    return (f"The server's disk is full ({free_mb(path):,.0f} MB free, {min_free_mb():,} MB needed): nothing can be "
            "saved. Free space on it (or ask the lecturer to); runs then carry on by themselves.")


def fair_order(queued: list[RunInfo], others: list[RunInfo] = ()) -> list[RunInfo]:
    """The order queued runs train in: each next one is the oldest run of the owner with the fewest
    runs training or started since the oldest run now waiting was queued (`others`: the runs not
    queued). Owners so take turns: no one, however many browsers they use, holds the queue ahead
    of the class, and one free worker still goes round them all."""
    if not queued:
        return []
    since = min(i.created for i in queued)
    busy = collections.Counter(i.owner for i in others if i.status in LIVE or (i.started or 0) >= since)
    waiting, order = sorted(queued, key=lambda i: i.created), []
    while waiting:
        first = min(waiting, key=lambda i: (busy[i.owner], i.created))
        waiting.remove(first)
        order.append(first)
        busy[first.owner] += 1
    return order


def is_run(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "run.json").is_file()


def list_runs(root: str | os.PathLike | None = None, *, owner: str | None | type = ..., limit: int | None = None,
              statuses=None) -> list[RunInfo]:
    """The runs under `root`, newest first; only `owner`'s when given (None: the CLI's, which have
    no owner). Folders that are not runs, or are damaged, are skipped."""
    root = Path(root) if root is not None else runs_root()
    found = []
    for path in root.iterdir() if root.is_dir() else []:
        if not path.is_dir() or path.name.startswith(".") or not is_run(path):
            continue
        try:
            info = Run(path).info()
        except (CheckpointError, OSError, TypeError, ValueError):
            continue
        if (owner is ... or info.owner == owner) and (statuses is None or info.status in statuses):
            found.append(info)
    found.sort(key=lambda i: i.created, reverse=True)
    return found[:limit] if limit is not None else found


def waiting_runs(root: str | os.PathLike) -> bool:
    """Whether any run under `root` waits to train (queued, or stopped by a full disk), from each
    run's status.json alone: what a pool with a free worker looks at every second."""
    root = Path(root)
    for path in root.iterdir() if root.is_dir() else []:
        st = read_json(path / "status.json", Problems(), {})
        if st.get("status") == "queued" or (st.get("status") == "failed" and st.get("reason") == "disk-full"):
            return True
    return False


def unreadable_runs(root: str | os.PathLike | None = None, listed: list[RunInfo] = ()) -> list[tuple[Path, str]]:
    """The run folders under `root` that list_runs leaves out because they cannot be read, each with
    why (`listed`: what list_runs gave, not read again)."""
    root = Path(root) if root is not None else runs_root()
    known, found = {i.path.name for i in listed}, []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name not in known and path.is_dir() and not path.name.startswith(".") and is_run(path):
            try:
                Run(path).info()
            except (CheckpointError, OSError, TypeError, ValueError) as e:
                found.append((path, str(e)))
    return found


def queue(root: str | os.PathLike | None = None) -> list[RunInfo]:
    """Queued runs in the order workers take them in (fair_order)."""
    infos = list_runs(root)
    return fair_order([i for i in infos if i.status == "queued"], [i for i in infos if i.status != "queued"])


def _write_history(run: Run, steps, losses, epochs: list[EpochMetrics]) -> None:
    lines = "step,loss\n" + "".join(f"{int(s)},{float(v):.6g}\n" for s, v in zip(steps, losses))
    atomic_write(run.path / "steps.csv", lambda f: f.write(lines.encode()))
    rows = "".join(json.dumps(m.to_dict()) + "\n" for m in epochs)
    atomic_write(run.path / "epochs.jsonl", lambda f: f.write(rows.encode()))


def continue_from(source: Run, config: TrainConfig, root: str | os.PathLike | None = None, **create) -> Run:
    """A new run that trains `source`'s weights on with new training settings (same architecture
    and data set; `config.epochs` counts on from the source's). It starts with the source's history,
    so its curves and step and epoch counters go on from where the source's end."""
    from .train import TrainState

    ckpt = source.load_checkpoint()
    if ckpt.config.model != config.model or ckpt.config.dataset != config.dataset:
        raise ConfigError("source", "a run continued from another keeps its architecture and data set")
    done = ckpt.training or TrainState(epoch=len(source.epochs()), step=int(source.info().steps_done))
    if config.epochs <= done.epoch:
        raise ConfigError("epochs", f"{source.info().name} has trained {done.epoch} epochs already; "
                                    f"plan more than that (e.g. {done.epoch + 5})")
    origin = {"run": source.id, "name": source.info().name, "epochs": done.epoch, "steps": done.step}
    run = Run.create(config, root, origin=origin, **create)
    steps, losses = source.steps()
    keep = steps <= done.step
    _write_history(run, steps[keep], losses[keep], [m for m in source.epochs() if m.epoch <= done.epoch])
    run.save_checkpoint(Checkpoint(config, ckpt.model, ckpt.dataset, ckpt.classes,
                                   training=TrainState(epoch=done.epoch, step=done.step)))
    return run


def from_checkpoint(ckpt: Checkpoint, root: str | os.PathLike | None = None, *, name: str, **create) -> Run:
    """An uploaded checkpoint as an ended run folder, with the curves it carries: it can then be
    compared, shown on every page and continued like a run trained here."""
    from .train import TrainState

    origin = create.pop("origin", None) or {"upload": name}  # an import says where it came from (imports.py)
    run = Run.create(ckpt.config, root, name=name, origin=origin, **create)
    steps = ckpt.steps.numpy() if len(ckpt.steps) else np.zeros((0, 2))
    try:
        # A long history is kept as the charts draw it (a mean per bucket of steps): a folder's size is
        # bounded whatever the file carries (1.9 million steps took 29 MB as they were).
        kept = LossCurve.of(steps[:, 0], steps[:, 1], points=UPLOAD_STEP_ROWS).to_dict()
        _write_history(run, kept["step"], kept["loss"], ckpt.epochs)
        last_step = int(steps[-1, 0]) if len(steps) else 0
        run.save_checkpoint(Checkpoint(ckpt.config, ckpt.model, ckpt.dataset, ckpt.classes, ckpt.metrics,
                                       ckpt.epochs, training=TrainState(epoch=len(ckpt.epochs), step=last_step)))
        run.write_live({"curve": LossCurve.of(kept["step"], kept["loss"]).to_dict(),
                        "epochs": [m.to_dict() for m in ckpt.epochs], "updated": time.time()})
        run.set_status("finished", "Uploaded.", epochs_done=len(ckpt.epochs), steps_done=last_step,
                       total_steps=last_step, final=ckpt.metrics, ended=time.time())
    except OSError:
        shutil.rmtree(run.path, ignore_errors=True)  # nothing half-kept
        raise
    return run


def export_checkpoint(run: Run) -> bytes:
    """The run's weights, settings and whole history in one .pt file, as the Download button gives it."""
    from .checkpoint import checkpoint_bytes

    ckpt = run.load_checkpoint()
    steps, losses = run.steps()
    ckpt.steps = torch.as_tensor(np.stack([steps, losses], axis=1) if len(steps) else np.zeros((0, 2)))
    ckpt.epochs, ckpt.metrics = run.epochs(), run.info().final or ckpt.metrics
    return checkpoint_bytes(ckpt)
