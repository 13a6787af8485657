"""Run folders: every run, from the CLI or the app, is a folder under the runs root from the moment
it is asked for, and the folder is the run's whole truth. A reload, a second tab, a restarted
server or another machine reads the same state from it.

    config.json    the settings (TrainConfig), written once
    run.json       name, owner, where it started from, when it was asked for
    status.json    queued | running | paused | finished | stopped | diverged | failed | interrupted,
                   with its message and progress; rewritten (atomically) by whoever drives the run
    control.json   what the user asked for: pause, stop (the worker polls it)
    claim.json     which process trains it now (created exclusively: one trainer per run)
    steps.csv      the loss of every step, appended as it trains
    epochs.jsonl   the metrics of every epoch, appended
    live.json      what a page draws: the loss curve decimated to a few hundred points, epochs, health
    checkpoint.pt  weights, settings and the state to carry on from, written at each epoch's end and at stop

Folders written before run folders existed (config.json, run.json, metrics.json, checkpoint.pt)
still load, as ended runs."""
from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import Checkpoint, CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from .model import PRESETS
from .settings import ConfigError, declared
from .train import EpochMetrics, TrainConfig

FORMAT = "lenet-lab/run"
STATUSES = ("queued", "running", "paused", "finished", "stopped", "diverged", "failed", "interrupted")
LIVE = ("queued", "running", "paused")
RESUMABLE = ("stopped", "interrupted", "failed")
HEARTBEAT_S = 5.0          # a training process rewrites status.json at least this often
STALE_AFTER_S = 60.0       # a run on another machine silent this long is taken as interrupted
CURVE_POINTS = 500         # the drawn loss curve's most points, whatever the run's length


def runs_root() -> Path:
    return Path(os.environ.get("LENET_RUNS_DIR") or "runs")


def _write_json(path: Path, obj) -> None:
    data = json.dumps(obj, indent=1).encode()
    atomic_write(path, lambda f: f.write(data))


def _read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _read_jsonl(path: Path) -> list:
    """The rows of a file appended one JSON line at a time, up to the first torn line (a crash mid-write)."""
    rows = []
    try:
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
    except OSError:
        pass
    return rows


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_process() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def process_alive(proc: dict) -> bool | None:
    """Whether the process described by this_process() still runs; None when it is on another host."""
    if not isinstance(proc, dict) or proc.get("host") != socket.gethostname():
        return None
    pid = proc.get("pid")
    if not isinstance(pid, int):
        return False
    if Path("/proc").is_dir():
        return _process_start(pid) is not None and _process_start(pid) == proc.get("start")
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def describe(config: TrainConfig) -> str:
    """A name that says what a run is: its nearest preset and what differs, e.g. "classic · lr 0.3"."""
    model_settings = declared(type(config.model))
    base_name, base = min(PRESETS.items(), key=lambda p: sum(getattr(p[1], k) != getattr(config.model, k)
                                                             for k in model_settings))
    parts = [base_name]
    for obj, ref in ((config.model, base), (config, TrainConfig())):
        for name, (meta, _) in declared(type(obj)).items():
            value = getattr(obj, name)
            if value == getattr(ref, name) or name in ("device",):
                continue
            if isinstance(value, tuple):
                value = ",".join(map(str, value)) or "none"
            elif isinstance(value, float):
                value = f"{value:g}"
            parts.append(str(value) if name in ("activation", "optimizer", "dataset") else f"{meta.short} {value}")
    return " · ".join(parts)


class LossCurve:
    """The loss per step in at most `points` buckets of equal width (a power of two steps), each
    holding its mean: when the buckets run out, neighbours merge and the width doubles. What a page
    draws stays this size however long the run; the full record stays in steps.csv."""

    def __init__(self, points: int = CURVE_POINTS):
        self.points, self.width = points, 1
        self.steps: list[int] = []    # each bucket's last step
        self.sums: list[float] = []
        self.counts: list[int] = []

    def add(self, step: int, loss: float) -> None:
        if self.counts and self.counts[-1] < self.width and step > self.steps[-1]:
            self.steps[-1], self.sums[-1], self.counts[-1] = step, self.sums[-1] + loss, self.counts[-1] + 1
        else:
            self.steps.append(step), self.sums.append(loss), self.counts.append(1)
        if len(self.steps) > self.points:
            self.width *= 2
            pairs = range(0, len(self.steps) - 1, 2)
            last = [] if len(self.steps) % 2 == 0 else [len(self.steps) - 1]
            self.steps = [self.steps[i + 1] for i in pairs] + [self.steps[i] for i in last]
            self.sums = [self.sums[i] + self.sums[i + 1] for i in pairs] + [self.sums[i] for i in last]
            self.counts = [self.counts[i] + self.counts[i + 1] for i in pairs] + [self.counts[i] for i in last]

    @classmethod
    def of(cls, steps, losses, points: int = CURVE_POINTS) -> LossCurve:
        curve = cls(points)
        for s, v in zip(np.asarray(steps).tolist(), np.asarray(losses).tolist()):
            curve.add(s, v)
        return curve

    def to_dict(self) -> dict:
        return {"step": self.steps, "loss": [s / c for s, c in zip(self.sums, self.counts)], "width": self.width}


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
                "created": self.created, "config": self.config.to_dict()}


class Run:
    """One run folder. Cheap to make: nothing is read until asked for."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

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
        run.path.mkdir(parents=True, exist_ok=True)
        now = time.time()
        _write_json(run.path / "config.json", config.to_dict())
        _write_json(run.path / "run.json", {"format": FORMAT, "version": 2, "name": name or describe(config),
                                            "owner": owner, "owner_name": owner_name, "created": now,
                                            "origin": origin or {}})
        run.set_status("queued", "Waiting for a free worker.", epochs_done=origin.get("epochs", 0) if origin else 0,
                       steps_done=origin.get("steps", 0) if origin else 0)
        return run

    # -- reading ---------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.path / "config.json").is_file()

    def config(self) -> TrainConfig:
        d = _read_json(self.path / "config.json")
        if d is None:
            raise CheckpointError(f"{self.path} is not a run folder (no readable config.json)")
        try:
            return TrainConfig.from_dict(d)
        except ConfigError as e:
            raise CheckpointError(f"{self.path}/config.json is damaged: {e}") from None

    def meta(self) -> dict:
        return _read_json(self.path / "run.json", {}) or {}

    def status(self) -> dict:
        return _read_json(self.path / "status.json", {}) or {}

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
        status, message = st.get("status", "failed"), st.get("message", "")
        if status in ("running", "paused") and not self.trainer_alive(st):
            status = "interrupted"
            message = (f"Interrupted: the process training it stopped during epoch {st.get('epochs_done', 0) + 1} "
                       f"(killed, or its machine went away). Its last finished epoch "
                       f"({st.get('epochs_done', 0)}) is kept: Resume carries it on from there.")
        return RunInfo(self.path, meta.get("name") or self.path.name, config, status, message, st.get("reason", ""),
                       meta.get("owner"), meta.get("owner_name", ""), meta.get("created", 0.0), st.get("started"),
                       st.get("ended"), st.get("updated"), st.get("epochs_done", 0), st.get("steps_done", 0),
                       st.get("total_steps", 0), st.get("samples_per_s"), st.get("train_seconds", 0.0),
                       st.get("device", ""), meta.get("origin") or {}, st.get("final") or {})

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
        """(step numbers, losses) of every step recorded, as arrays."""
        if self.legacy:
            rows = (_read_json(self.path / "metrics.json", {}) or {}).get("steps", [])
            table = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
            return table[:, 0].astype(np.int64), table[:, 1]
        try:
            table = np.loadtxt(self.path / "steps.csv", delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
        except (OSError, ValueError):  # none yet, or a line cut short by a kill: read line by line
            table = self._steps_tolerant()
        table = table.reshape(-1, 2)
        return table[:, 0].astype(np.int64), table[:, 1]

    def _steps_tolerant(self) -> np.ndarray:
        rows = []
        try:
            with open(self.path / "steps.csv") as f:
                next(f, None)
                for line in f:
                    try:
                        s, v = line.split(",")
                        rows.append((int(s), float(v)))
                    except ValueError:
                        break
        except OSError:
            pass
        return np.asarray(rows, dtype=np.float64)

    def epochs(self) -> list[EpochMetrics]:
        if self.legacy:
            rows = (_read_json(self.path / "metrics.json", {}) or {}).get("epochs", [])
        else:
            rows = _read_jsonl(self.path / "epochs.jsonl")
        return [EpochMetrics(**r) for r in rows]

    def health(self) -> list[dict]:
        """The layer health readings (recording.Health), in step order."""
        return _read_jsonl(self.path / "health.jsonl")

    def live(self) -> dict:
        return _read_json(self.path / "live.json", {}) or {}

    def control(self) -> dict:
        return _read_json(self.path / "control.json", {}) or {}

    def has_checkpoint(self) -> bool:
        return (self.path / "checkpoint.pt").is_file()

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

    def request(self, **changes) -> None:
        """Ask the trainer to pause (pause=True), resume (pause=False) or stop (stop=True)."""
        ctl = self.control()
        ctl.update(changes, updated=time.time())
        _write_json(self.path / "control.json", ctl)

    def requeue(self, message: str = "Waiting to carry on.") -> None:
        """Queue an ended run to carry on (Resume): earlier pause and stop requests are dropped."""
        _write_json(self.path / "control.json", {"pause": False, "stop": False, "updated": time.time()})
        self.set_status("queued", message)

    def rename(self, name: str) -> None:
        meta = self.meta()
        meta["name"] = name
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

    def truncate(self, step: int, epoch: int) -> None:
        """Forget what was recorded after `step` and `epoch` (work lost with a killed trainer)."""
        s, v = self.steps()
        keep = s <= step
        lines = "step,loss\n" + "".join(f"{a},{b:.6g}\n" for a, b in zip(s[keep], v[keep]))
        atomic_write(self.path / "steps.csv", lambda f: f.write(lines.encode()))
        epochs = "".join(json.dumps(m.to_dict()) + "\n" for m in self.epochs() if m.epoch <= epoch)
        atomic_write(self.path / "epochs.jsonl", lambda f: f.write(epochs.encode()))
        health = "".join(json.dumps(r) + "\n" for r in self.health() if r.get("step", 0) <= step)
        atomic_write(self.path / "health.jsonl", lambda f: f.write(health.encode()))

    def write_live(self, live: dict) -> None:
        _write_json(self.path / "live.json", live)

    def save_checkpoint(self, ckpt: Checkpoint) -> None:
        save_checkpoint(self.path / "checkpoint.pt", ckpt, with_training=True)


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


def queue(root: str | os.PathLike | None = None) -> list[RunInfo]:
    """Queued runs in the order they were asked for: the order workers take them in."""
    return sorted(list_runs(root, statuses=("queued",)), key=lambda i: i.created)


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
    _write_history(run, steps[:, 0], steps[:, 1], ckpt.epochs)
    last_step = int(steps[-1, 0]) if len(steps) else 0
    run.save_checkpoint(Checkpoint(ckpt.config, ckpt.model, ckpt.dataset, ckpt.classes, ckpt.metrics, ckpt.epochs,
                                   training=TrainState(epoch=len(ckpt.epochs), step=last_step)))
    run.write_live({"curve": LossCurve.of(steps[:, 0], steps[:, 1]).to_dict(),
                    "epochs": [m.to_dict() for m in ckpt.epochs], "updated": time.time()})
    run.set_status("finished", "Uploaded.", epochs_done=len(ckpt.epochs), steps_done=last_step,
                   total_steps=last_step, final=ckpt.metrics, ended=time.time())
    return run


def export_checkpoint(run: Run) -> bytes:
    """The run's weights, settings and whole history in one .pt file, as the Download button gives it."""
    from .checkpoint import checkpoint_bytes

    ckpt = run.load_checkpoint()
    steps, losses = run.steps()
    ckpt.steps = torch.as_tensor(np.stack([steps, losses], axis=1) if len(steps) else np.zeros((0, 2)))
    ckpt.epochs, ckpt.metrics = run.epochs(), run.info().final or ckpt.metrics
    return checkpoint_bytes(ckpt)
