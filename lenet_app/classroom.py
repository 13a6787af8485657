"""The lecturer's view of the room: every run on the server, who started it and how it does."""
from __future__ import annotations

from lenet_core.runs import RunInfo, describe, list_runs, runs_root, unreadable_runs

from . import session
from .runs import problems_of, status_label

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


def rows(infos: list[RunInfo]) -> list[dict]:
    who = names(infos)
    return [{"student": who[i.owner], "run": i.name, "what": describe(i.config), "activation": i.config.model.activation,
             "status": status_label(i), "live": i.live, "epochs": f"{i.epochs_done} of {i.config.epochs}",
             "accuracy": i.test_accuracy, "id": i.id} for i in infos]


def leaderboard(infos: list[RunInfo], setting: str, value: str, top: int = 10) -> list[dict]:
    """Each student's best accuracy among runs whose `setting` is `value` (any: all runs)."""
    who, best = names(infos), {}
    for i in infos:
        if i.test_accuracy is None or i.status not in ("finished", "stopped"):
            continue
        obj = i.config.model if hasattr(i.config.model, setting) else i.config
        if value != ANY and str(getattr(obj, setting, None)) != value:
            continue
        if i.owner not in best or i.test_accuracy > best[i.owner].test_accuracy:
            best[i.owner] = i
    ranked = sorted(best.values(), key=lambda i: i.test_accuracy, reverse=True)[:top]
    return [{"rank": n, "student": who[i.owner], "accuracy": i.test_accuracy, "run": i.name}
            for n, i in enumerate(ranked, 1)]


def damaged(infos: list[RunInfo]) -> list[str]:
    """One line per ended run with damaged files, and per run folder that cannot be read at all."""
    who = names(infos)
    lines = [f"{who.get(i.owner, '')}: {i.name}: {'; '.join(problems)}" for i in infos
             if not i.live and (problems := problems_of(i.path, deep=False))]
    return lines + [f"{path.name}: {why.replace(str(path), '').strip()}" for path, why in unreadable_runs(runs_root(), infos)]
