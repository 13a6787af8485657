"""The chapter's exercises, one click each from Home: each button starts what answers it, then
opens the page that shows the answer."""
from __future__ import annotations

import statistics

import streamlit as st

from lenet_core.model import preset
from lenet_core.runs import list_runs, runs_root
from lenet_core.train import TrainConfig

from . import models, runs
from .run_views import CURRENT, OVERLAY

KERNELS = (3, 5, 7)
PAIR = [(TrainConfig(model=preset("classic")), "classic (exercise 1)"),
        (TrainConfig(model=preset("modern")), "modern (exercise 1)")]
SWEEP = [(TrainConfig(model=preset("modern").replace(kernel_size=k)), f"modern · kernel {k} (exercise 2)")
         for k in KERNELS]


def _room_for(n: int) -> bool:
    mine = runs.my_runs()
    free = runs.limits()["live"] - sum(i.live for i in mine)
    if free < n:
        st.session_state["home.message"] = (
            f"This starts {n} runs, and you can have {runs.limits()['live']} waiting or training at once "
            f"({free} free now). Stop some on the Train page first.")
        return False
    return True


def _show(started) -> None:
    """Train shows the first run above, and the exercise's runs, and only those, overlaid."""
    st.session_state[CURRENT] = started[0].id
    st.session_state[OVERLAY] = [r.id for r in started]
    # Every run there is now counts as seen, so none of the earlier ones joins the overlay as new.
    st.session_state.setdefault("train.overlay_seen", set()).update(i.id for i in runs.my_runs())
    st.session_state["home.go"] = "views/train.py"


def minutes_for(configs: list[TrainConfig]) -> float | None:
    """How long the slowest of `configs` took on this server before (its finished runs of the same
    network, data and batch size, any owner), in minutes; None where none has finished yet."""
    done = [i for i in list_runs(runs_root(), statuses=("finished",)) if i.train_seconds and i.epochs_done]
    longest = None
    for config in configs:
        per_epoch = [i.train_seconds / max(1, i.epochs_done - i.origin.get("epochs", 0)) for i in done
                     if (i.config.model, i.config.dataset, i.config.batch_size) ==
                     (config.model, config.dataset, config.batch_size)]
        if not per_epoch:
            return None
        minutes = statistics.median(per_epoch) * config.epochs / 60
        longest = max(longest or 0.0, minutes)
    return longest


def how_long(action: str) -> str | None:
    """" About 9 minutes here." for an exercise that trains, from this server's earlier runs."""
    configs = {"classic_vs_modern": [c for c, _ in PAIR], "kernel_sweep": [c for c, _ in SWEEP]}.get(action)
    minutes = minutes_for(configs) if configs else None
    if minutes is None:
        return " Once they start, each run's line on Train says how long it has left." if configs else None
    if action == "kernel_sweep":  # one after the other
        minutes = sum(minutes_for([c]) or minutes for c in configs)
    return f" About **{max(1, round(minutes))} minutes** on this server (its earlier runs of these networks)."


def classic_vs_modern() -> None:
    """Exercise 1: the chapter's LeNet-5 and the modernised one, from the same seed, trained side by
    side (the executor starts them together), so both curves rise at once."""
    if _room_for(len(PAIR)):
        _show(runs.start_together(PAIR))


def kernel_sweep() -> None:
    """Exercise 2: the modern LeNet with 3x3, 5x5 and 7x7 kernels, trained one after the other."""
    if _room_for(len(SWEEP)):
        _show([runs.start(config, name=name) for config, name in SWEEP])


def pullovers_vs_coats() -> None:
    """Exercise 3: the chapter's network's maps for a pullover and a coat, side by side."""
    models.choose("shipped:fashion-classic")
    st.session_state.update({"act_view": "Compare two inputs",
                             "act_a_source": "Test image", "act_b_source": "Test image",
                             "act_a_class": "Pullover", "act_b_class": "Coat"})
    st.session_state["home.go"] = "views/activations.py"
