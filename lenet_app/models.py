"""The models the Draw, Activations and Evaluate pages look at: the shipped ones, this browser's
runs, and runs trained from the command line (no owner: every browser sees them). One choice,
shared by those pages and kept across page switches.

Loaded models are shared by every session of the server (st.cache_resource), so they are made
read-only: eval mode, no gradients. A page never trains them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from lenet_core.checkpoint import CheckpointError, load_checkpoint
from lenet_core.model import LeNet
from lenet_core.runs import Run, list_runs, runs_root

from . import runs, session
from .datasets import DATASET_LABELS

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
SHIPPED = {  # folder -> (name, what it is)
    "digits": ("Digits", "LeNet-5 on MNIST digits"),
    "fashion-classic": ("Fashion classic", "the chapter's LeNet-5"),
    "fashion-modern": ("Fashion modern", "ReLU + max pooling"),
}
KEY = "model"          # the pickers' widget key on Draw, Activations and Evaluate
CHOICE = "models.choice"  # the one model choice they share: kept here, not in a widget's own state
DEFAULT = "shipped:digits"
MAX_RUNS_OFFERED = 20


@dataclass
class ModelEntry:
    key: str
    name: str
    model: LeNet
    dataset: str
    classes: tuple[str, ...]
    source: str                     # shipped | run
    metrics: dict = field(default_factory=dict)
    note: str = ""                  # what a shipped model is, said in place of data set and accuracy
    path: Path | None = None        # the run folder it comes from

    @property
    def is_digits(self) -> bool:
        return self.dataset == "mnist"

    @property
    def label(self) -> str:
        """'name (details)' for a picker, e.g. 'classic · lr 0.3 (your run, Fashion-MNIST, 85.1%)'."""
        if self.note:
            return f"{self.name} ({self.note})"
        acc = self.metrics.get("test_accuracy")
        details = ["your run" if self.source == "run" else "saved run", DATASET_LABELS.get(self.dataset, self.dataset)]
        return f"{self.name} ({', '.join(details + ([f'{acc:.1%}'] if acc is not None else []))})"


def _read_only(model: LeNet) -> LeNet:
    return model.eval().requires_grad_(False)


@st.cache_resource(show_spinner=False)
def shipped_models() -> dict[str, ModelEntry]:
    """The models in models/, loaded once per server."""
    out = {}
    for folder, (name, note) in SHIPPED.items():
        try:
            ckpt = load_checkpoint(MODELS_DIR / folder / "checkpoint.pt")
        except CheckpointError:
            continue
        out[f"shipped:{folder}"] = ModelEntry(f"shipped:{folder}", name, _read_only(ckpt.model), ckpt.dataset,
                                              ckpt.classes, "shipped", ckpt.metrics, note, MODELS_DIR / folder)
    return out


@st.cache_resource(show_spinner=False, max_entries=32)
def _run_model(path: str, modified: int) -> tuple | str:
    """A run's model, loaded once per version of its checkpoint (`modified`): (model, dataset, classes),
    or why it cannot be opened."""
    try:
        ckpt = Run(path).load_checkpoint()
    except (CheckpointError, OSError) as e:
        return str(e)
    return _read_only(ckpt.model), ckpt.dataset, ckpt.classes


def _offered_runs(who: str) -> list:
    return list_runs(runs_root(), owner=who)[:MAX_RUNS_OFFERED] + list_runs(runs_root(), owner=None)[:10]


def run_models(who: str | None = None, unopened: list | None = None) -> list[ModelEntry]:
    """This browser's runs with weights, then the command line's, newest first; those whose weights
    cannot be opened go to `unopened` as (name, why)."""
    who = who or session.owner()
    entries = []
    for info in _offered_runs(who):
        ckpt = info.path / "checkpoint.pt"
        try:
            loaded = _run_model(str(info.path.resolve()), ckpt.stat().st_mtime_ns)
        except OSError:
            continue  # no weights yet: a run in its first epoch
        if isinstance(loaded, str):
            if unopened is not None:
                unopened.append((info.name, loaded.replace(f"{info.id}/", "")))
            continue
        model, dataset, classes = loaded
        entries.append(ModelEntry(f"run:{info.id}", info.name, model, dataset, classes,
                                  "run" if info.owner else "saved", info.final, path=info.path))
    return entries


def available_models() -> list[ModelEntry]:
    return list(shipped_models().values()) + run_models()


def entry_for(key: str) -> ModelEntry | None:
    return next((e for e in available_models() if e.key == key), None)


def choose(key: str) -> None:
    """Make `key` the model of Draw, Activations and Evaluate (an exercise, a link between pages)."""
    st.session_state[CHOICE] = key
    st.session_state[KEY] = key


def _picked() -> None:
    st.session_state[CHOICE] = st.session_state.get(KEY)


def picker(label: str = "Model") -> ModelEntry | None:
    """The shared model choice; it falls back to the default when its model has gone. Runs whose
    weights cannot be opened are named, with why, rather than left out without a word. The choice is
    this module's own session value, given to each page's picker before it is drawn: a widget's
    state is dropped on pages that do not draw it, and a value set for it there was lost."""
    unopened = []
    entries = list(shipped_models().values()) + run_models(unopened=unopened)
    if unopened:
        st.warning("Not offered, its weights cannot be opened: "
                   + "; ".join(f"**{session.markdown_text(n)}** ({session.markdown_text(why)})" for n, why in unopened[:3])
                   + (f"; and {len(unopened) - 3} more" if len(unopened) > 3 else ""), icon=":material/warning:")
    if not entries:
        st.warning("No model is available yet: train one on the Train page.")
        return None
    keys = [e.key for e in entries]
    chosen = st.session_state.get(CHOICE)
    if chosen not in keys:
        chosen = st.session_state.get(KEY) if st.session_state.get(KEY) in keys else (
            DEFAULT if DEFAULT in keys else keys[0])
    choose(chosen)
    labels = {e.key: e.label for e in entries}
    chosen = st.selectbox(label, keys, key=KEY, format_func=labels.get, on_change=_picked,
                          help="Shared by Draw, Activations and Evaluate: the shipped models, your runs, and runs "
                               "trained from the command line.")
    entry = entries[keys.index(chosen)]
    if entry.source != "shipped" and entry.path is not None and (problems := runs.problems_of(entry.path)):
        st.warning("Some of this run's files are damaged (its weights are sound): "
                   + "; ".join(session.markdown_text(p) for p in problems), icon=":material/warning:")
    return entry
