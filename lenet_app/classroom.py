"""The lecturer's view of the room: every run on the server, who started it and how it does."""
from __future__ import annotations

import functools

from lenet_core.runs import Run, RunInfo, describe, list_runs, runs_root, unreadable_runs

from . import session
from .runs import is_upload, problems_of, status_label


ANY = "any"


def everyone() -> list[RunInfo]:
    return list_runs(runs_root())


def names(infos: list[RunInfo]) -> dict[str | None, str]:
    """Owner -> display name: the name a student picked (now, not when the run started)."""
    out: dict[str | None, str] = {None: "command line"}
    for info in infos:
        if info.owner not in out:
            out[info.owner] = session.display_name(info.owner) or info.owner_name or f"student {info.owner[:4]}"
    return out


@functools.lru_cache(maxsize=512)
def _latest_val_acc(path: str, epochs_done: int) -> float | None:
    """The validation accuracy of a run's latest epoch, read once per epoch it finishes."""
    try:
        epochs = Run(path).epochs()
    except (OSError, ValueError, TypeError):
        return None
    return epochs[-1].val_acc if epochs else None


def progress(info: RunInfo) -> float:
    """How far a run is, 0 to 1: its steps while it trains, its epochs once it has ended."""
    if info.live and info.total_steps:
        return min(1.0, info.steps_done / info.total_steps)
    return min(1.0, info.epochs_done / max(1, info.config.epochs))


def rows(infos: list[RunInfo]) -> list[dict]:
    """One row per run. "validation" is its latest epoch's accuracy, there while it trains;
    "test" its final accuracy, once it has ended after at least one epoch."""
    who = names(infos)
    return [{"student": who[i.owner], "run": i.name, "what": describe(i.config), "activation": i.config.model.activation,
             "status": status_label(i), "live": i.live, "progress": progress(i),
             "epochs": f"{i.epochs_done} of {i.config.epochs}",
             "validation": percent(_latest_val_acc(str(i.path), i.epochs_done) if i.epochs_done else None),
             "test": percent(i.test_accuracy if i.epochs_done and not i.live else None), "id": i.id} for i in infos]


def percent(fraction: float | None) -> str:
    """"84.0%", or "–" where there is none yet (the grid shows a missing number as "None")."""
    return "–" if fraction is None else f"{fraction:.1%}"


def leaderboard(infos: list[RunInfo], setting: str, value: str, top: int = 10) -> list[dict]:
    """Each student's best accuracy among runs whose `setting` is `value` (any: all runs) trained
    here: an uploaded checkpoint was trained elsewhere, by anyone, and does not compete."""
    who, best = names(infos), {}
    for i in infos:
        if i.test_accuracy is None or i.status not in ("finished", "stopped") or is_upload(i) or not i.epochs_done:
            continue
        obj = i.config.model if hasattr(i.config.model, setting) else i.config
        if value != ANY and str(getattr(obj, setting, None)) != value:
            continue
        if i.owner not in best or i.test_accuracy > best[i.owner].test_accuracy:
            best[i.owner] = i
    ranked = sorted(best.values(), key=lambda i: i.test_accuracy, reverse=True)[:top]
    return [{"rank": n, "student": who[i.owner], "accuracy": round(100 * i.test_accuracy, 1), "run": i.name}
            for n, i in enumerate(ranked, 1)]


def damaged(infos: list[RunInfo]) -> list[str]:
    """One line per ended run with damaged files, and per run folder that cannot be read at all."""
    who = names(infos)
    lines = [f"{who.get(i.owner, '')}: {i.name}: {'; '.join(problems)}" for i in infos
             if not i.live and (problems := problems_of(i.path, deep=False))]
    return lines + [f"{path.name}: {why.replace(str(path), '').strip()}" for path, why in unreadable_runs(runs_root(), infos)]
