"""A browser's runs: starting them within a shared server's limits, acting on them (pause, resume,
stop, rename, delete, download), and the table that compares them. Every action goes to the run
folder; nothing about a run is kept in a session's memory."""
from __future__ import annotations

import os
import shutil
import time

from lenet_core.checkpoint import Checkpoint
from lenet_core.runs import RESUMABLE, Run, RunInfo, continue_from, from_checkpoint, list_runs, runs_root
from lenet_core.settings import declared
from lenet_core.train import TrainConfig

from . import session
from .server import executor

STATUS_LABELS = {"queued": "queued", "running": "training", "paused": "paused", "finished": "finished",
                 "stopped": "stopped", "diverged": "diverged", "failed": "failed", "interrupted": "interrupted"}


class LimitError(Exception):
    """A limit of the shared server that refuses an action; the message says which and what to do."""


def limits() -> dict[str, int]:
    """Per browser: runs waiting or training at once, and runs kept (LENET_MAX_LIVE_RUNS, LENET_MAX_RUNS)."""
    return {"live": int(os.environ.get("LENET_MAX_LIVE_RUNS") or 3),
            "kept": int(os.environ.get("LENET_MAX_RUNS") or 50)}


def my_runs(who: str | None = None) -> list[RunInfo]:
    """This browser's runs, newest first."""
    return list_runs(runs_root(), owner=who or session.owner())


def status_label(info: RunInfo) -> str:
    if info.status == "diverged" and info.reason == "chance":
        return "did not learn"
    return STATUS_LABELS.get(info.status, info.status)


def _check_room(who: str) -> None:
    mine, cap = my_runs(who), limits()
    live = sum(i.live for i in mine)
    if live >= cap["live"]:
        raise LimitError(f"You have {live} runs waiting or training, the most this server allows at once "
                         f"({cap['live']}). Stop one, or wait for one to end.")
    if len(mine) >= cap["kept"]:
        raise LimitError(f"You have kept {len(mine)} runs, the most this server allows ({cap['kept']}). "
                         "Delete some you no longer need (under Your runs) to start more.")


def start(config: TrainConfig, source: RunInfo | None = None) -> Run:
    """A new run of `config` (carrying `source`'s weights on, if given), queued for the executor."""
    who = session.owner()
    _check_room(who)
    owner = {"owner": who, "owner_name": session.display_name(who)}
    run = (continue_from(Run(source.path), config, runs_root(), **owner) if source is not None
           else Run.create(config, runs_root(), **owner))
    executor().submit(run)
    _wait_for_a_worker(run)
    return run


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
    name = session.clean_name(filename.removesuffix(".pt")) + " (uploaded)"
    return from_checkpoint(ckpt, runs_root(), name=name, owner=who, owner_name=session.display_name(who))


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
    run.request(stop=True)
    if info.status == "queued" and not run.trainer_alive():
        run.set_status("stopped", "Stopped before it started.")


def resume(info: RunInfo) -> None:
    if can_control(info) and info.status in RESUMABLE:
        if sum(i.live for i in my_runs()) >= limits()["live"]:
            raise LimitError(f"You have {limits()['live']} runs waiting or training already; stop one first.")
        run = Run(info.path)
        run.requeue()
        executor().submit(run)


def rename(info: RunInfo, name: str) -> None:
    name = session.clean_name(name)
    if can_control(info) and name:
        Run(info.path).rename(name)


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
    out = {}
    for obj in (config.model, config):
        for name, (meta, _) in declared(type(obj)).items():
            if not meta.cli or name == "epochs":
                continue
            value = getattr(obj, name)
            out[meta.short] = (", ".join(map(str, value)) or "none") if isinstance(value, tuple) else (
                f"{value:g}" if isinstance(value, float) else str(value))
    return out


def runs_table(infos: list[RunInfo]) -> list[dict]:
    """One row per run: name, status, the settings that differ between the runs, results. Results
    are text, "–" where there is none yet."""
    settings = [flat_settings(i.config) for i in infos]
    differing = [k for k in (settings[0] if settings else {}) if len({s[k] for s in settings}) > 1]
    rows = []
    for info, s in zip(infos, settings):
        acc = info.test_accuracy
        rows.append({"run": info.name, "status": status_label(info), **{k: s[k] for k in differing},
                     "accuracy": f"{acc:.1%}" if acc is not None else "–",
                     "epochs": f"{info.epochs_done} of {info.config.epochs}",
                     "samples/s": f"{info.samples_per_s:,.0f}" if info.samples_per_s else "–"})
    return rows

