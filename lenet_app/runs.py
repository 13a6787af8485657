"""A browser's runs: starting them within a shared server's limits, acting on them (pause, resume,
stop, rename, delete, download), and the table that compares them. Every action goes to the run
folder; nothing about a run is kept in a session's memory."""
from __future__ import annotations

import functools
import json
import os
import shutil
import time
import zlib
from pathlib import Path

from lenet_core.checkpoint import Checkpoint, atomic_write
from lenet_core.runs import (RESUMABLE, DiskFullError, Run, RunInfo, continue_from, describe, describe_changes,
                             disk_full_message, free_mb, from_checkpoint, list_runs, min_free_mb, queue, runs_root)
from lenet_core.settings import in_words
from lenet_core.train import TrainConfig

from . import session
from .trainers import executor

STATUS_LABELS = {"queued": "queued", "running": "training", "paused": "paused", "finished": "finished",
                 "stopped": "stopped", "diverged": "diverged", "failed": "failed", "interrupted": "interrupted"}


class LimitError(Exception):
    """A limit of the shared server that refuses an action; the message says which and what to do."""


def limits() -> dict[str, int]:
    """Per browser: runs waiting or training at once, and runs kept (LENET_MAX_LIVE_RUNS, LENET_MAX_RUNS)."""
    return {"live": int(os.environ.get("LENET_MAX_LIVE_RUNS") or 3),
            "kept": int(os.environ.get("LENET_MAX_RUNS") or 50),
            "queued": int(os.environ.get("LENET_MAX_QUEUED") or 60)}


def my_runs(who: str | None = None) -> list[RunInfo]:
    """This browser's runs, newest first."""
    return list_runs(runs_root(), owner=who or session.owner())


# A run's colour in every chart: picked when it starts, one its owner's recent runs do not have, and
# kept in its run.json, so it stays the same whatever else a chart shows (Plotly's ten colours).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f")


def status_label(info: RunInfo) -> str:
    if info.status == "diverged" and info.reason == "chance":
        return "did not learn"
    if is_upload(info):  # trained elsewhere: "finished, 6 of 10 epochs" would be this server's word for it
        return "uploaded"
    return STATUS_LABELS.get(info.status, info.status)


def is_upload(info: RunInfo) -> bool:
    return bool(info.origin.get("upload")) and info.status == "finished"


def unique_name(name: str, taken) -> str:
    """`name`, or `name #2`, `#3`, ... where one of `taken` has it already: two runs never read alike."""
    taken, n = set(taken), 2
    out = name
    while out in taken:
        out, n = f"{name} #{n}", n + 1
    return out


def colour(info: RunInfo) -> str:
    """The run's own colour: the one it was given when it started, else one from its id (runs
    trained from the command line)."""
    index = Run(info.path).meta().get("colour")
    if not isinstance(index, int) or not 0 <= index < len(PALETTE):
        index = zlib.crc32(info.id.encode()) % len(PALETTE)
    return PALETTE[index]


def _give_colour(run: Run, others: list[RunInfo]) -> None:
    used = [PALETTE.index(colour(i)) for i in others[:len(PALETTE) - 1]]  # the newest first
    free = [c for c in range(len(PALETTE)) if c not in used] or [len(others) % len(PALETTE)]
    meta = run.meta()
    meta["colour"] = free[0]
    data = json.dumps(meta, indent=1).encode()
    atomic_write(run.path / "run.json", lambda f: f.write(data))


def _check_room(who: str) -> None:
    if free_mb(runs_root()) < min_free_mb():
        raise LimitError(disk_full_message(runs_root()))
    mine, cap = my_runs(who), limits()
    waiting = len(queue(runs_root()))
    if waiting >= cap["queued"]:
        raise LimitError(f"The server has {waiting} runs waiting for a worker, the most it queues "
                         f"({cap['queued']}). Try again when some have trained.")
    live = sum(i.live for i in mine)
    if live >= cap["live"]:
        raise LimitError(f"You have {live} runs waiting or training, the most this server allows at once "
                         f"({cap['live']}). Stop one, or wait for one to end.")
    if len(mine) >= cap["kept"]:
        raise LimitError(f"You have kept {len(mine)} runs, the most this server allows ({cap['kept']}). "
                         "Delete some you no longer need (under Your runs) to start more.")


def create(config: TrainConfig, source: RunInfo | None = None, name: str | None = None) -> Run:
    """A new run folder of `config` (carrying `source`'s weights on, if given), named so that this
    browser's other runs do not read the same, with a colour of its own; not yet queued."""
    who = session.owner()
    _check_room(who)
    mine = my_runs(who)
    owner = {"owner": who, "owner_name": session.display_name(who),
             "name": unique_name(name or describe(config), (i.name for i in mine))}
    try:
        run = (continue_from(Run(source.path), config, runs_root(), **owner) if source is not None
               else Run.create(config, runs_root(), **owner))
        _give_colour(run, mine)
    except OSError as e:  # the disk filled as the folder was written: nothing is left behind
        raise LimitError(str(e) if isinstance(e, DiskFullError) else f"The run could not be saved: {e.strerror or e}")
    return run


def start(config: TrainConfig, source: RunInfo | None = None, name: str | None = None) -> Run:
    """A new run of `config` (see create), queued for the executor."""
    run = create(config, source, name)
    executor().submit(run)
    _wait_for_a_worker(run)
    return run


def start_together(configs: list[tuple[TrainConfig, str]]) -> list[Run]:
    """Runs that train side by side (an exercise's pair): the executor starts them at the same time
    when it can, sharing the machine, so their curves rise together."""
    started = [create(config, name=name) for config, name in configs]
    executor().submit_together(started)
    _wait_for_a_worker(started[0])
    return started


def _wait_for_a_worker(run: Run, wait_s: float = 1.0) -> None:
    """Give an idle worker a moment to take the run (about 0.3 s here), so that the page drawn
    after Start shows it training already: its panel would otherwise ask for a second whole-page
    rerun when it starts, CPU that the browser takes from training on a small machine."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and run.status().get("status") == "queued":
        time.sleep(0.05)


def add_upload(ckpt: Checkpoint, filename: str) -> Run:
    who = session.owner()
    _check_room(who)
    # Named for what it is, as runs trained here are: a file's name is often the download's own
    # ("lenet-classic6epochs(stopped)"). Its status reads "uploaded".
    trained = f" · {len(ckpt.epochs)} epoch{'s' * (len(ckpt.epochs) != 1)}" if ckpt.epochs else ""
    name = unique_name(describe(ckpt.config) + trained, (i.name for i in my_runs(who)))
    try:
        run = from_checkpoint(ckpt, runs_root(), name=name, owner=who, owner_name=session.display_name(who))
        _give_colour(run, my_runs(who))
    except OSError as e:
        raise LimitError(str(e) if isinstance(e, DiskFullError) else f"It could not be saved: {e.strerror or e}")
    return run


def _signature(path: Path) -> tuple:
    try:
        return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(path)))
    except OSError:
        return ()


@functools.lru_cache(maxsize=256)
def _problems(path: Path, deep: bool, signature: tuple) -> tuple[str, ...]:
    return tuple(Run(path).check(deep))


def problems_of(path: Path, deep: bool = True) -> list[str]:
    """What is damaged in a run's folder, one line per file; read again only when its files change."""
    return list(_problems(Path(path), deep, _signature(path)))


def add_import(arch, data, trial, check, filename: str) -> Run:
    """A network brought in from a plain state dict (lenet_core.imports), as a run of this browser."""
    from lenet_core.imports import import_run

    who = session.owner()
    _check_room(who)
    name = session.clean_name(filename) + " (imported)"
    run, _ = import_run(arch, data, trial, filename, runs_root(), name=name, check_result=check, owner=who,
                        owner_name=session.display_name(who))
    return run


def can_control(info: RunInfo) -> bool:
    return info.owner == session.owner() or session.is_lecturer()


def pause(info: RunInfo, paused: bool) -> None:
    if can_control(info) and info.status in ("running", "paused"):
        Run(info.path).request(pause=paused)


def stop(info: RunInfo) -> None:
    if not can_control(info) or not info.live:
        return
    run = Run(info.path)
    # Who stopped it and when, for the student's page: a lecturer's stop is not the student's own.
    by = "lecturer" if session.is_lecturer() and info.owner != session.owner() else "owner"
    run.request(stop=True, stopped_by=by, stopped_at=time.time())
    if info.status == "queued" and not run.trainer_alive():
        run.set_status("stopped", "Stopped before it started.")


def change_settings(info: RunInfo, **values: float) -> None:
    """New optimizer settings for a run that trains or is paused, from its next step (ConfigError
    when out of bounds or when it has ended)."""
    if can_control(info):
        Run(info.path).change_settings(**values)


def step_by_hand(info: RunInfo, steps: int | str) -> None:
    if can_control(info) and info.status == "paused":
        Run(info.path).step_by_hand(steps)


def resume(info: RunInfo) -> None:
    if can_control(info) and info.status in RESUMABLE:
        if sum(i.live for i in my_runs()) >= limits()["live"]:
            raise LimitError(f"You have {limits()['live']} runs waiting or training already; stop one first.")
        run = Run(info.path)
        run.requeue()
        executor().submit(run)


def stopped_by_lecturer(info: RunInfo) -> str | None:
    """"Your lecturer stopped this run at 10:42." for a run the lecturer stopped, else None."""
    if info.status != "stopped":
        return None
    ctl = Run(info.path).control()
    if ctl.get("stopped_by") != "lecturer":
        return None
    at = ctl.get("stopped_at")
    when = ""
    if isinstance(at, (int, float)):
        day = "" if time.strftime("%Y%m%d", time.localtime(at)) == time.strftime("%Y%m%d") else \
            time.strftime(" on %d %b", time.localtime(at))
        when = f" at {time.strftime('%H:%M', time.localtime(at))}{day}"
    return f"Your lecturer stopped this run{when}."


def rename(info: RunInfo, name: str) -> None:
    name = session.clean_name(name)
    if can_control(info) and name and name != info.name:
        Run(info.path).rename(unique_name(name, (i.name for i in my_runs(info.owner) if i.id != info.id)))


def delete(info: RunInfo) -> None:
    """Remove an ended run's folder (only this browser's, only a run folder under the runs root)."""
    if info.owner != session.owner() or info.live:
        return
    path = info.path.resolve()
    if path.parent == runs_root().resolve() and (path / "config.json").is_file():
        shutil.rmtree(path, ignore_errors=True)


# -- the table ---------------------------------------------------------------------------------

def flat_settings(config: TrainConfig) -> dict[str, str]:
    """Every declared setting of a run as text, by its short label."""
    words = {**in_words(config.model, only_cli=True), **in_words(config, only_cli=True, skip=("epochs",))}
    return {meta.short: text for meta, text in words.values()}


def runs_table(infos: list[RunInfo]) -> list[dict]:
    """One row per run: name, status, the settings that differ between the runs, results. Results
    are text, "–" where there is none yet."""
    settings = [flat_settings(i.config) for i in infos]
    differing = [k for k in (settings[0] if settings else {}) if len({s[k] for s in settings}) > 1]
    rows = []
    for info, s in zip(infos, settings):
        # A network stopped before its first epoch ends is not a result (its 10% is chance).
        acc = info.test_accuracy if info.epochs_done > 0 else None
        rows.append({"run": info.name, "status": status_label(info), **{k: s[k] for k in differing},
                     "accuracy": f"{acc:.1%}" if acc is not None else "–",
                     "epochs": f"{info.epochs_done} of {info.config.epochs}",
                     "samples/s": f"{info.samples_per_s:,.0f}" if info.samples_per_s else "–"})
        if any(i.changes for i in infos):
            rows[-1]["changed while training"] = describe_changes(info.changes) or "–"
    return rows

