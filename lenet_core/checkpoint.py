"""Checkpoints that rebuild their model by themselves, every field checked before anything is built.

A checkpoint is loaded with torch.load(weights_only=True), so only tensors and plain data are
unpickled and nothing in the file can run code. Then each field is checked (types, ranges, the
data set and its class names, the settings against the app's bounds, the weights' names, shapes
and values) before a model is built or a page uses it: a file that asks for a dense layer of
two million units, or holds a test accuracy given as text, is refused with a message."""
from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import re
import secrets
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .data import DATASETS
from .model import LeNet
from .settings import ConfigError
from .train import EpochMetrics, TrainConfig, TrainState

FORMAT = "lenet-lab/checkpoint"
VERSION = 2  # 1: before run folders; 2 adds the training state a run carries on from
MAX_BYTES = 64 << 20  # the largest network allowed (5 million parameters) with Adam's state is under 64 MB
# An upload is a downloaded checkpoint (weights and history, no optimizer state): one limit for the
# browser, the server and the loader. Streamlit's browser side counts a MB as 1,000,000 bytes, its
# server as 2**20, so the loader holds uploads to the browser's count (.streamlit/config.toml says 50).
UPLOAD_MAX_MB = 50
UPLOAD_MAX_BYTES = UPLOAD_MAX_MB * 1_000_000
MAX_EPOCH_ROWS, MAX_STEP_ROWS = 10_000, 2_000_000  # 200 epochs at batch 8 take 1.5 million steps
FINAL_NUMBERS = {"test_accuracy": (0, 1), "test_loss": (0, math.inf), "train_time_s": (0, math.inf),
                 "samples_per_s": (0, math.inf), "epochs": (0, math.inf)}


class CheckpointError(ValueError):
    """A file that is not a usable LeNet Lab checkpoint; the message says why, for the user."""


class ForeignTorchFile(CheckpointError):
    """A torch file that loaded safely (tensors and plain data only) but is not a LeNet Lab
    checkpoint: `payload` is what it holds, for the import of plain state dicts (imports.py)."""

    def __init__(self, message: str, payload):
        super().__init__(message)
        self.payload = payload


@dataclass
class Checkpoint:
    config: TrainConfig
    model: LeNet
    dataset: str
    classes: tuple[str, ...]
    metrics: dict = field(default_factory=dict)           # final figures, e.g. test_accuracy
    epochs: list[EpochMetrics] = field(default_factory=list)
    steps: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.float64))  # (step, loss) rows
    training: TrainState | None = None                     # where to carry on from (run folders' checkpoints)


def atomic_write(path: Path, write) -> None:
    """Write `path` through `write(binary file)` all at once or not at all: a temporary file
    beside it, renamed over it when complete, removed when `write` fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its files are private (0600), and a checkpoint is meant to be shared. Created
    # with 0666, the kernel applies the umask itself.
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


def _on_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_on_cpu(v) for v in obj)
    return obj


def checkpoint_bytes(ckpt: Checkpoint, with_training: bool = False) -> bytes:
    # Only plain containers, numbers, strings and tensors: what weights_only loading accepts.
    payload = {
        "format": FORMAT, "version": VERSION,
        "config": ckpt.config.to_dict(),
        "state_dict": _on_cpu(ckpt.model.state_dict()),
        "dataset": ckpt.dataset, "classes": list(ckpt.classes),
        "metrics": dict(ckpt.metrics),
        "epochs": [m.to_dict() for m in ckpt.epochs],
        "steps": torch.as_tensor(ckpt.steps, dtype=torch.float64).reshape(-1, 2),
    }
    if with_training and ckpt.training is not None:
        payload["training"] = _on_cpu(ckpt.training.to_dict())
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def save_checkpoint(path: str | os.PathLike, ckpt: Checkpoint, with_training: bool = False) -> Path:
    data = checkpoint_bytes(ckpt, with_training)
    atomic_write(Path(path), lambda f: f.write(data))
    return Path(path)


def _pickled_module(source) -> bool:
    """Whether a torch zip file holds a whole nn.Module (torch.save(model, ...)): its pickle names
    the _parameters and _modules every module has. The opcodes are only listed, never run."""
    try:
        source.seek(0)
        with zipfile.ZipFile(source) as z:
            pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
            if z.getinfo(pkl).file_size > MAX_BYTES:
                return False
            names = {arg for _, arg, _ in pickletools.genops(z.read(pkl)) if isinstance(arg, str)}
    except (OSError, ValueError, StopIteration, zipfile.BadZipFile, EOFError, RuntimeError):
        return False
    return {"_parameters", "_modules"} <= names


def _why_unreadable(source, error: Exception, name: str = "model.pt") -> str:
    """What a file torch.load(weights_only=True) refused is, in words for the user."""
    # torch words it "unsupported GLOBAL posix.system" or "Unsupported global: GLOBAL __main__.Net"
    blocked = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", str(error), re.IGNORECASE)
    if blocked and _pickled_module(source):
        return (f"it holds a whole pickled model ({blocked.group(1)}, saved with torch.save(model, ...)), which "
                "only loads by running code from the file, so it was refused and nothing in it was run. Where "
                f"you trust it (in your notebook), save its weights instead: model = torch.load({name!r}, "
                "weights_only=False), then torch.save(model.state_dict(), 'lenet.params'), and bring that file")
    if blocked:
        return (f"it asks to load Python objects ({blocked.group(1)}) besides tensors and plain data, "
                "so it was refused and nothing in it was run")
    try:
        source.seek(0)
        head = source.read(4)
    except (OSError, AttributeError, ValueError):
        head = b""
    if not head:
        return "the file is empty"
    if head.startswith(b"PK"):
        return "it is a zip archive but not one written by torch.save (or it is damaged)"
    if head.startswith(b"\x80"):
        return "it is a plain Python pickle, not a file written by torch.save; it was refused and nothing in it was run"
    return "it is not a file written by torch.save (LeNet Lab checkpoints are .pt files saved by the app or the CLI)"


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"  # as the browser's uploader counts them


def _check_inflated_size(source: io.BytesIO, name: str, limit: int) -> None:
    """torch.save writes a zip; its members' declared sizes are checked before anything is inflated,
    so a small file that would inflate to gigabytes (a zip bomb) costs no memory. A member that
    inflates past its declared size fails the zip reader's own check."""
    try:
        with zipfile.ZipFile(source) as z:
            members = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a zip (an old-style torch file, or damage): torch.load reads or refuses it
    finally:
        source.seek(0)
    declared = sum(m.file_size for m in members)
    if len(members) > 100_000 or declared > limit:
        raise CheckpointError(f"{name} would inflate to {_mb(declared)} in {len(members):,} parts; "
                              f"a LeNet Lab file is at most {_mb(limit)}, so it was not opened")


def safe_torch_load(source, name: str, *, limit: int | None = None, kind: str = "checkpoint"):
    """The payload of a torch file from a path, bytes or a binary file, bounded before it costs
    memory (its size on disk, then what it would inflate to) and read with weights_only=True, so
    nothing in it can run code. CheckpointError, in words, for anything else."""
    limit = MAX_BYTES if limit is None else limit
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise CheckpointError(f"{name} is a folder, not a {kind} file")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise CheckpointError(f"{name}: no such file") from None
        if size > limit:
            raise CheckpointError(f"{name} is {_mb(size)}; a LeNet Lab {kind} is at most {_mb(limit)}")
        source = io.BytesIO(path.read_bytes())
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > limit:
            raise CheckpointError(f"{name} is {_mb(len(source))}; a LeNet Lab {kind} is at most {_mb(limit)}")
        source = io.BytesIO(bytes(source))
    _check_inflated_size(source, name, limit)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(source, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, TypeError,
            AttributeError, ImportError, KeyError, IndexError, OSError, MemoryError) as e:
        raise CheckpointError(f"{name} is not a LeNet Lab {kind}: {_why_unreadable(source, e, name)}") from None


def check_format(payload, name: str, format_name: str, version: int, kind: str = "checkpoint") -> dict:
    """The payload as a mapping of LeNet Lab's `format_name`, of a version this one reads. A torch
    file of another kind is a ForeignTorchFile, which holds the payload (a plain state dict may be
    imported: imports.py)."""
    if not isinstance(payload, dict) or payload.get("format") != format_name:
        raise ForeignTorchFile(f"{name} is not a LeNet Lab {kind} (it is a torch file of another kind)", payload)
    found = payload.get("version", 0)
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        raise CheckpointError(f"{name} is damaged: its format version is {found!r:.40}")
    if found > version:
        raise CheckpointError(f"{name} was written by a newer LeNet Lab ({kind} format {found}); update the app")
    return payload


def _read(source, name: str, limit: int | None = None) -> dict:
    return check_format(safe_torch_load(source, name, limit=limit), name, FORMAT, VERSION)


class _Damaged(Exception):
    """One field of a payload that is not what it should be."""


def _number(value, what: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise _Damaged(f"{what} is {value!r:.40}, not a number from {low:g} to {high:g}")
    return value


def _metrics(d) -> dict:
    if not isinstance(d, dict):
        raise _Damaged(f"its final metrics are a {type(d).__name__}, not a mapping")
    out = {}
    for key, (low, high) in FINAL_NUMBERS.items():
        if key in d:
            out[key] = _number(d[key], key, low, high)
    per_class = d.get("per_class_accuracy")
    if isinstance(per_class, dict):
        out["per_class_accuracy"] = {str(k)[:40]: _number(v, "a per-class accuracy", 0, 1)
                                     for k, v in list(per_class.items())[:100]}
    return out


def _epochs(rows) -> list[EpochMetrics]:
    if not isinstance(rows, list) or len(rows) > MAX_EPOCH_ROWS:
        raise _Damaged("its per-epoch metrics are not a list of at most 10,000 epochs")
    out = []
    for row in rows:
        if not isinstance(row, dict) or set(row) != set(EpochMetrics.__dataclass_fields__):
            raise _Damaged("an epoch's metrics do not have the fields a LeNet Lab epoch has")
        out.append(EpochMetrics(**{k: _number(v, f"an epoch's {k}", 0) for k, v in row.items()}))
    return out


def _steps(steps) -> torch.Tensor:
    """The loss per step as a (steps, 2) float64 table of (step, loss) rows."""
    try:
        table = steps if isinstance(steps, torch.Tensor) else torch.tensor(steps, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise _Damaged("its loss per step is not a list of (step, loss) pairs") from None
    table = table.reshape(-1, 2) if table.numel() == 0 else table
    if (table.dim() != 2 or table.shape[1] != 2 or len(table) > MAX_STEP_ROWS or not table.is_floating_point()
            or not torch.isfinite(table[:, 0]).all() or (table[:, 0] < 0).any()):
        raise _Damaged("its loss per step is not a table of (step, loss) rows")
    return table.to(torch.float64)


def _weights(model: LeNet, state_dict) -> None:
    expected = model.state_dict()
    if not isinstance(state_dict, dict) or set(state_dict) != set(expected):
        missing = sorted(set(expected) - set(state_dict)) if isinstance(state_dict, dict) else []
        raise _Damaged("its weights do not fit the network its settings describe"
                       + (f" (no {missing[0]})" if missing else ""))
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or value.shape != expected[key].shape or not value.is_floating_point():
            raise _Damaged(f"its weights {key} are not a float tensor of shape {tuple(expected[key].shape)}")
        if not torch.isfinite(value).all():
            raise _Damaged(f"its weights {key} hold NaN or infinite values")
    model.load_state_dict(state_dict)


def _training(d) -> TrainState | None:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise _Damaged("its training state is not a mapping")
    try:
        state = TrainState.from_dict(d)
    except TypeError:
        raise _Damaged("its training state has unknown fields") from None
    for key in ("epoch", "step", "batch"):
        _number(getattr(state, key), f"its training state's {key}", 0)
    if not (state.optimizer is None or isinstance(state.optimizer, dict)):
        raise _Damaged("its optimizer state is not a mapping")
    if not (state.shuffle is None or isinstance(state.shuffle, torch.Tensor)):
        raise _Damaged("its shuffle state is not a tensor")
    return state


def load_checkpoint(source, name: str | None = None, limit: int | None = None) -> Checkpoint:
    """A checkpoint from a path, bytes or a binary file object (at most `limit` bytes, MAX_BYTES by
    default), checked field by field; CheckpointError (with the reason, in words) for anything that
    is not a sound one."""
    name = name or (str(source) if isinstance(source, (str, os.PathLike)) else "the uploaded file")
    payload = _read(source, name, limit)
    try:
        config = TrainConfig.from_dict(payload.get("config"))
        config.validate()  # bounds first: nothing is built for settings this app would refuse
    except ConfigError as e:
        raise CheckpointError(f"{name} has settings this app cannot use: {e}") from None
    try:
        dataset = payload.get("dataset", config.dataset)
        if dataset not in DATASETS or dataset != config.dataset:
            raise _Damaged(f"its data set {dataset!r:.40} is not {config.dataset!r}, one of {', '.join(DATASETS)}")
        classes = payload.get("classes", list(DATASETS[dataset][2]))
        if list(classes) != list(DATASETS[dataset][2]) if isinstance(classes, (list, tuple)) else True:
            raise _Damaged(f"its class names are not those of {dataset} ({', '.join(DATASETS[dataset][2])})")
        model = LeNet(config.model)
        _weights(model, payload.get("state_dict"))
        ckpt = Checkpoint(config, model.eval(), dataset, tuple(classes), _metrics(payload.get("metrics", {})),
                          _epochs(payload.get("epochs", [])), _steps(payload.get("steps", [])),
                          _training(payload.get("training")))
    except _Damaged as e:
        raise CheckpointError(f"{name} is damaged: {e}") from None
    return ckpt
