"""Checkpoints that rebuild their model by themselves, and run directories."""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import secrets
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .model import ConfigError, LeNet
from .train import EpochMetrics, TrainConfig

FORMAT = "lenet-lab/checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable LeNet Lab checkpoint."""


@dataclass
class Checkpoint:
    config: TrainConfig
    model: LeNet
    dataset: str
    classes: tuple[str, ...]
    metrics: dict = field(default_factory=dict)           # final figures, e.g. test_accuracy
    epochs: list[EpochMetrics] = field(default_factory=list)
    steps: list[tuple[int, float]] = field(default_factory=list)


def atomic_write(path: Path, write) -> None:
    """Write `path` through `write(binary file)` all at once or not at all: a temporary file
    beside it, renamed over it when complete, removed when `write` fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its files are private (0600), and a checkpoint is meant to be shared. Created
    # with 0666, the kernel applies the umask itself; reading the umask with os.umask would set
    # it process-wide for a moment, and the app writes files from several threads.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def checkpoint_bytes(ckpt: Checkpoint) -> bytes:
    # Only plain containers, numbers, strings and tensors: what weights_only loading accepts.
    payload = {
        "format": FORMAT, "version": VERSION,
        "config": ckpt.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.model.state_dict().items()},
        "dataset": ckpt.dataset, "classes": list(ckpt.classes),
        "metrics": dict(ckpt.metrics),
        "epochs": [m.to_dict() for m in ckpt.epochs],
        "steps": [[int(s), float(v)] for s, v in ckpt.steps],
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def save_checkpoint(path: str | os.PathLike, ckpt: Checkpoint) -> Path:
    path = Path(path)
    data = checkpoint_bytes(ckpt)
    atomic_write(path, lambda f: f.write(data))
    return path


def _why_unreadable(source, error: Exception) -> str:
    """What a file torch.load(weights_only=True) refused is, in words for the user."""
    text = str(error)
    blocked = re.search(r"unsupported GLOBAL ([\w.]+)", text, re.IGNORECASE)
    if blocked:
        return (f"it asks to load Python objects ({blocked.group(1)}) besides tensors and plain data, "
                "so it was refused and nothing in it was run")
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                head = f.read(4)
        else:
            source.seek(0)
            head = source.read(4)
    except (OSError, AttributeError, ValueError):
        head = b""
    if not head:
        return "the file is empty"
    if head.startswith(b"PK"):
        return "it is a zip archive but not one written by torch.save (or it is damaged)"
    if head.startswith(b"\x80"):
        return ("it is a plain Python pickle, not a file written by torch.save; it was refused and "
                "nothing in it was run")
    return "it is not a file written by torch.save (LeNet Lab checkpoints are .pt files saved by the app or the CLI)"


def load_checkpoint(source, map_location="cpu") -> Checkpoint:
    """Load from a path, bytes or a binary file object. Only tensors and plain
    data are unpickled (weights_only=True): nothing in the file can run code."""
    name = str(source) if isinstance(source, (str, os.PathLike)) else "the uploaded file"
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(source, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{name} is a folder, not a checkpoint file") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, TypeError,
            AttributeError, ImportError, KeyError, IndexError, OSError) as e:
        raise CheckpointError(f"{name} is not a LeNet Lab checkpoint: {_why_unreadable(source, e)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{name} is not a LeNet Lab checkpoint (it is a torch file of another kind)")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{name} was written by a newer LeNet Lab (format {payload['version']}); update the app")
    try:
        config = TrainConfig.from_dict(payload["config"])
        model = LeNet(config.model)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ConfigError, RuntimeError) as e:
        raise CheckpointError(f"{name} is damaged: {str(e).splitlines()[0][:200]}") from None
    model.eval()
    return Checkpoint(
        config=config, model=model, dataset=payload.get("dataset", config.dataset),
        classes=tuple(payload.get("classes", ())), metrics=dict(payload.get("metrics", {})),
        epochs=[EpochMetrics(**m) for m in payload.get("epochs", [])],
        steps=[(int(s), float(v)) for s, v in payload.get("steps", [])])


# -- run directories --------------------------------------------------------

def runs_root() -> Path:
    return Path(os.environ.get("LENET_RUNS_DIR", "runs"))


def holds_run(folder: str | os.PathLike) -> bool:
    """Whether `folder` already holds (part of) a run that save_run would replace."""
    return any((Path(folder) / name).exists() for name in ("checkpoint.pt", "run.json"))


def save_run(run_dir: str | os.PathLike, ckpt: Checkpoint, status: str = "finished", extra: dict | None = None) -> Path:
    """Write settings, metrics per step and epoch, and the checkpoint into `run_dir`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run_dir / "checkpoint.pt", ckpt)
    info = {"status": status, "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"), "dataset": ckpt.dataset,
            "classes": list(ckpt.classes), "final": ckpt.metrics, **(extra or {})}
    for fname, obj in (("config.json", ckpt.config.to_dict()),
                       ("metrics.json", {"epochs": [m.to_dict() for m in ckpt.epochs],
                                         "steps": [[s, v] for s, v in ckpt.steps]}),
                       ("run.json", info)):
        text = json.dumps(obj, indent=1).encode()
        atomic_write(run_dir / fname, lambda f, t=text: f.write(t))
    return run_dir


@dataclass
class RunInfo:
    path: Path
    config: TrainConfig
    status: str
    final: dict
    saved_at: str


def list_runs(root: str | os.PathLike | None = None, limit: int | None = None) -> list[RunInfo]:
    """Run directories under `root` (newest first, at most `limit`); damaged ones are skipped."""
    root = Path(root) if root else runs_root()
    runs = []
    for d in sorted(root.glob("*/"), key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []:
        if limit is not None and len(runs) >= limit:
            break
        try:
            info = json.loads((d / "run.json").read_text())
            config = TrainConfig.from_dict(json.loads((d / "config.json").read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if (d / "checkpoint.pt").is_file():
            runs.append(RunInfo(d, config, info.get("status", "?"), info.get("final", {}), info.get("saved_at", "")))
    return runs


def load_run(path: str | os.PathLike) -> Checkpoint:
    """A run directory or a checkpoint file."""
    path = Path(path)
    return load_checkpoint(path / "checkpoint.pt" if path.is_dir() else path)
