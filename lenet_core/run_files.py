"""The one tolerant reader of a run folder's text files.

Any file read back from disk may be damaged (a full disk, a crash mid-write, a hand edit) or have
been written by another version of LeNet Lab. Each reader here keeps what is readable, and says in
one line what it could not read; none raises for bad content. Binary files (checkpoint.pt,
probes.pt) have their own checked loaders (checkpoint.py, probes.py).

A torn last line (a process killed mid-append) is normal and dropped without a word; anything else
that cannot be read is reported, e.g. "epochs.jsonl: 2 lines unreadable (line 3: not JSON)"."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .train import EpochMetrics

MAX_TEXT_BYTES = 256 << 20  # 200 epochs at batch 8 make a 30 MB steps.csv; past this a file is not ours


class Problems(dict):
    """file name -> what was wrong with it, in words."""

    def lines(self) -> list[str]:
        return [f"{name}: {what}" for name, what in self.items()]


def _read_bytes(path: Path, problems: Problems) -> bytes | None:
    try:
        if path.stat().st_size > MAX_TEXT_BYTES:
            problems[path.name] = f"larger than {MAX_TEXT_BYTES >> 20} MB, not read"
            return None
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        problems[path.name] = f"cannot be read ({e.strerror or e})"
        return None


def read_json(path: Path, problems: Problems, default=None):
    """One JSON object (a mapping); `default` when the file is missing or damaged."""
    data = _read_bytes(path, problems)
    if data is None:
        return default
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        problems[path.name] = f"damaged, not JSON ({type(e).__name__})"
        return default
    if not isinstance(value, dict):
        problems[path.name] = f"damaged: holds a {type(value).__name__}, not a mapping"
        return default
    return value


def _lines(path: Path, problems: Problems) -> list[bytes]:
    data = _read_bytes(path, problems)
    if not data:
        return []
    lines = data.split(b"\n")
    # The last piece has no newline after it: empty after a whole line, or a line a kill cut short.
    return lines[:-1]


def _report(path: Path, problems: Problems, bad: list[tuple[int, str]]) -> None:
    if bad:
        line, why = bad[0]
        problems[path.name] = (f"{len(bad)} line{'s' * (len(bad) != 1)} unreadable, skipped "
                               f"(line {line}: {why})")


def read_jsonl(path: Path, problems: Problems, row=lambda d: d) -> list:
    """The rows of a file appended one JSON line at a time, each passed through `row`, which returns
    the row to keep or a string saying why it is not one."""
    rows, bad = [], []
    for n, line in enumerate(_lines(path, problems), 1):
        try:
            value = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            bad.append((n, "not JSON"))
            continue
        kept = row(value)
        if isinstance(kept, str):
            bad.append((n, kept))
        else:
            rows.append(kept)
    _report(path, problems, bad)
    return rows


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


EPOCH_FIELDS = tuple(EpochMetrics.__dataclass_fields__)


def epoch_row(d) -> EpochMetrics | str:
    """An epoch's metrics from a row, or why the row is not one. Fields an other version added are
    ignored; every field this version has must be there, a finite number >= 0."""
    if not isinstance(d, dict):
        return "not a mapping"
    missing = [k for k in EPOCH_FIELDS if k not in d]
    if missing:
        return f"no {missing[0]}"
    wrong = next((k for k in EPOCH_FIELDS if not _number(d[k]) or d[k] < 0), None)
    if wrong:
        return f"{wrong} is {d[wrong]!r:.30}, not a number"
    if d["epoch"] != int(d["epoch"]) or d["epoch"] < 1:
        return f"epoch is {d['epoch']!r:.30}"
    return EpochMetrics(**{k: (int(d[k]) if k == "epoch" else float(d[k])) for k in EPOCH_FIELDS})


def one_per_epoch(epochs: list[EpochMetrics]) -> list[EpochMetrics]:
    """Each epoch once (the last row written for it wins), in order."""
    return sorted({m.epoch: m for m in epochs}.values(), key=lambda m: m.epoch)


def read_epochs(path: Path, problems: Problems) -> list[EpochMetrics]:
    rows = read_jsonl(path, problems, epoch_row)
    epochs = one_per_epoch(rows)
    if len(epochs) < len(rows) and path.name not in problems:
        problems[path.name] = f"{len(rows) - len(epochs)} epochs recorded twice; the last record of each kept"
    return epochs


def health_row(d) -> dict | str:
    """A layer-health reading (recording.Health), or why the row is not one."""
    if not isinstance(d, dict) or not isinstance(d.get("step"), int) or d["step"] < 0:
        return "no step number"
    layers, grad = d.get("layers", {}), d.get("grad", {})
    if not isinstance(layers, dict) or not all(isinstance(v, dict) and all(x is None or _number(x) for x in v.values())
                                               for v in layers.values()):
        return "its layers are not readings"
    if not isinstance(grad, dict) or not all(x is None or _number(x) for x in grad.values()):
        return "its gradients are not numbers"
    return {"step": d["step"], "epoch": d.get("epoch") if isinstance(d.get("epoch"), int) else 0,
            "layers": layers, "grad": grad}


def read_health(path: Path, problems: Problems) -> list[dict]:
    return sorted(read_jsonl(path, problems, health_row), key=lambda r: r["step"])


def read_steps(path: Path, problems: Problems) -> tuple[np.ndarray, np.ndarray]:
    """(step numbers, losses) of steps.csv, each step once (the last row written for it), in order."""
    rows, bad = [], []
    lines = _lines(path, problems)
    for n, line in enumerate(lines[1:] if lines and lines[0].strip() == b"step,loss" else lines, 2):
        try:
            s, v = line.decode("ascii").split(",")
            step, loss = int(s), float(v)
            if step < 0 or not math.isfinite(loss):
                raise ValueError
            rows.append((step, loss))
        except (UnicodeDecodeError, ValueError):
            bad.append((n, "not 'step,loss'"))
    _report(path, problems, bad)
    table = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
    steps = table[:, 0].astype(np.int64)
    if len(steps) and not (np.diff(steps) > 0).all():
        # Rows a restarted trainer wrote again: keep the last of each step.
        last = len(steps) - 1 - np.unique(steps[::-1], return_index=True)[1]
        if path.name not in problems:
            problems[path.name] = f"{len(steps) - len(last)} steps recorded twice; the last record of each kept"
        table = table[np.sort(last)]
        table = table[np.argsort(table[:, 0], kind="stable")]
        steps = table[:, 0].astype(np.int64)
    return steps, table[:, 1]
