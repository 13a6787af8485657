"""What the pages share: shipped models, the session's runs, cached data sets.

Server-wide caches hold only read-only things (shipped models in eval mode, data
sets). Everything a user trains lives in that user's session state."""
from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from lenet_core import DataUnavailableError, ImageData, load_dataset
from lenet_core.checkpoint import Checkpoint, CheckpointError, list_runs, load_checkpoint, load_run, runs_root
from lenet_core.data import DATASETS, candidate_dirs, find_local
from lenet_core.model import LeNet
from lenet_core.train import TrainConfig, TrainingJob, device_label, resolve_device

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
SHIPPED = {  # folder -> (name, what it is)
    "digits": ("Digits", "MNIST"),
    "fashion-classic": ("Fashion classic", "the chapter's LeNet-5"),
    "fashion-modern": ("Fashion modern", "ReLU + max pooling"),
}
KIND_LABELS = {"shipped": "shipped", "saved": "saved run"}  # session and uploaded runs go by their name
DATASET_LABELS = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST digits"}


@dataclass
class ModelEntry:
    """A model a page can use: shipped, trained in this session, or uploaded."""

    key: str
    name: str
    model: LeNet
    dataset: str
    classes: tuple[str, ...]
    source: str                     # shipped | saved | session | uploaded
    metrics: dict = field(default_factory=dict)
    note: str = ""                  # what a shipped model is, said in place of data set and accuracy

    @property
    def is_digits(self) -> bool:
        return self.dataset == "mnist"

    @property
    def details(self) -> list[str]:
        """What a picker says about it after its name and kind: the note, or data set and accuracy."""
        if self.note:
            return [self.note]
        acc = self.metrics.get("test_accuracy")
        return [DATASET_LABELS.get(self.dataset, self.dataset)] + ([f"{acc:.1%}"] if acc is not None else [])

    @property
    def label(self) -> str:
        """'name (kind, details)' for a model picker, e.g. 'run 2 (saved run, Fashion-MNIST, 85.1%)'."""
        kind = KIND_LABELS.get(self.source)
        return f"{self.name} ({', '.join(([kind] if kind else []) + self.details)})"


@st.cache_resource(show_spinner=False)
def shipped_models() -> dict[str, ModelEntry]:
    """The models in models/, loaded once per server; never trained further."""
    out = {}
    for folder, (name, note) in SHIPPED.items():
        try:
            ckpt = load_checkpoint(MODELS_DIR / folder / "checkpoint.pt")
        except CheckpointError:
            continue
        ckpt.model.eval().requires_grad_(False)
        out[f"shipped:{folder}"] = ModelEntry(f"shipped:{folder}", name, ckpt.model, ckpt.dataset,
                                              ckpt.classes, "shipped", ckpt.metrics, note)
    return out


@st.cache_resource(show_spinner=False)
def _load_data_cached(name: str) -> ImageData:
    return load_dataset(name)


_recent_failures: dict[tuple, tuple[float, str]] = {}
RETRY_AFTER_S = 30


def get_data(name: str) -> tuple[ImageData | None, str | None]:
    """(data, None) or (None, the message that says what is missing and how to get it).
    A failed download is not retried on every rerun, only after RETRY_AFTER_S or
    as soon as a local copy appears."""
    key = (name, tuple(candidate_dirs(name)))  # a changed LENET_DATA_DIR is a new attempt
    failed = _recent_failures.get(key)
    if failed and time.time() - failed[0] < RETRY_AFTER_S and find_local(name) is None:
        return None, failed[1]
    try:
        return _load_data_cached(name), None
    except DataUnavailableError as e:
        _recent_failures[key] = (time.time(), str(e))
        return None, str(e)


_CODE = re.compile(r"sudo apt-get install [\w-]+|--data-dir DIR|\b[A-Z_]+=[\w/.-]*\w"
                   r"|(?<![\w`])(?:/|[\w.-]+/)[\w./-]*[\w/]")


def missing_data_markdown(message: str) -> str:
    """The data loader's 'what is missing and how to get it' as Markdown: its bullet lines
    become a list, and paths and commands become code spans (copyable; underscores kept)."""
    lines = []
    for line in message.splitlines():
        body = _CODE.sub(lambda m: f"`{m.group(0)}`", line.strip())
        lines.append(body if body.startswith("- ") else f"\n{body}\n")
    return "\n".join(lines).strip()


def forget_data_failures() -> None:
    """Let the next get_data try again at once (a "Check again" button)."""
    _recent_failures.clear()


def local_data_status() -> dict[str, str | None]:
    """Data set -> folder holding a local copy, or None. Never downloads."""
    return {name: (str(p) if (p := find_local(name)) else None) for name in DATASETS}


@st.cache_resource(show_spinner=False)
def device_info() -> str:
    return device_label(resolve_device("auto"))


# -- the session's runs ---------------------------------------------------------

@dataclass
class SessionRun:
    """One training of this session (live or finished), or an uploaded checkpoint."""

    id: int
    name: str
    config: TrainConfig
    job: TrainingJob | None = None          # None for an uploaded checkpoint
    checkpoint: Checkpoint | None = None    # filled in when the job ends or on upload
    created: float = field(default_factory=time.time)

    @property
    def key(self) -> str:
        return f"run:{self.id}"


_ids = itertools.count(1)


def session_runs() -> dict[int, SessionRun]:
    return st.session_state.setdefault("lenet_runs", {})


def add_run(config: TrainConfig, job: TrainingJob | None = None, checkpoint: Checkpoint | None = None,
            name: str | None = None) -> SessionRun:
    runs = session_runs()
    run_id = next(_ids)
    while run_id in runs:
        run_id = next(_ids)
    run = SessionRun(run_id, name or f"run {len(runs) + 1}", config, job, checkpoint)
    runs[run_id] = run
    return run


def finished_checkpoint(run: SessionRun) -> Checkpoint | None:
    """The run's checkpoint once its job is over (built once, then kept)."""
    if run.checkpoint is None and run.job is not None and not run.job.alive:
        snap = run.job.snapshot()
        if snap.status in ("finished", "stopped") and snap.step > 0:
            last = snap.epochs[-1] if snap.epochs else None
            metrics = {"status": snap.status, "train_time_s": round(snap.elapsed_s, 1)}
            if last:
                metrics.update(test_accuracy=last.val_acc, test_loss=last.val_loss)
            run.checkpoint = Checkpoint(run.config, run.job.model, run.config.dataset, run.job.classes,
                                        metrics, snap.epochs, snap.steps)
    return run.checkpoint


MAX_SAVED_RUNS = 20


@st.cache_resource(show_spinner=False, max_entries=4 * MAX_SAVED_RUNS)
def _saved_run_entry(path: str, modified: float) -> ModelEntry | None:
    """One run folder's model, loaded once per version of its checkpoint (`modified`)."""
    try:
        ckpt = load_run(path)
    except CheckpointError:
        return None
    ckpt.model.eval().requires_grad_(False)
    return ModelEntry(f"saved:{path}", Path(path).name, ckpt.model, ckpt.dataset, ckpt.classes, "saved",
                      ckpt.metrics)


def saved_run_models() -> list[ModelEntry]:
    """The newest run folders under the runs folder (`runs/`, or LENET_RUNS_DIR), e.g. saved by
    `python -m lenet_core train --out runs/NAME`; folders that are not runs are skipped."""
    entries = []
    for info in list_runs(runs_root(), limit=MAX_SAVED_RUNS):
        try:
            modified = (info.path / "checkpoint.pt").stat().st_mtime
        except OSError:
            continue
        if (entry := _saved_run_entry(str(info.path.resolve()), modified)) is not None:
            entries.append(entry)
    return entries


def available_models(dataset: str | None = None) -> list[ModelEntry]:
    """Shipped models first, then saved run folders, then this session's finished runs
    (optionally only one data set's)."""
    entries = list(shipped_models().values()) + saved_run_models()
    for run in session_runs().values():
        ckpt = finished_checkpoint(run)
        if ckpt is not None:
            entries.append(ModelEntry(run.key, run.name, ckpt.model, ckpt.dataset, ckpt.classes,
                                      "uploaded" if run.job is None else "session", ckpt.metrics))
    return [e for e in entries if dataset is None or e.dataset == dataset]


def model_picker(label: str, key: str, dataset: str | None = None, default: str | None = None) -> ModelEntry | None:
    """A selectbox over available models; remembers the choice across pages by key."""
    entries = available_models(dataset)
    if not entries:
        st.warning("No model is available yet: train one on the Train page.")
        return None
    keys = [e.key for e in entries]
    if st.session_state.get(key) not in keys:
        st.session_state[key] = default if default in keys else keys[0]
    chosen = st.selectbox(label, keys, key=key, format_func={e.key: e.label for e in entries}.get)
    return entries[keys.index(chosen)]


def ensure_app_frame() -> None:
    """Call first on a page. On a fresh server, Streamlit runs the first request the old
    way (there is a folder named pages/ next to app.py) when it is for a page's own URL,
    e.g. a tab reconnecting to /evaluate after a restart: the page then runs without
    app.py's frame (no wide layout, a navigation listing file names). Switch the server
    to app.py's st.navigation and run again; from then on this is a no-op.
    AppTest resets the switch before every run and runs pages directly: left alone there
    (a rerun would swallow the clicks under test)."""
    from streamlit import config
    from streamlit.runtime.pages_manager import PagesManager  # no public switch for this

    if PagesManager.uses_pages_directory and not config.get_option("global.appTest"):
        PagesManager.uses_pages_directory = False
        st.rerun()
