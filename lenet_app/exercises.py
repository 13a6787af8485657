"""The chapter's exercises, one click each from Home: each button starts what answers it, then
opens the page that shows the answer."""
from __future__ import annotations

import streamlit as st

from lenet_core.model import preset
from lenet_core.train import TrainConfig

from . import runs
from .run_views import CURRENT

KERNELS = (3, 5, 7)


def _queue(configs: list[TrainConfig]) -> bool:
    """Start the runs one after the other, show them overlaid on Train; False (with the reason kept
    for the page) when the server's limits refuse them."""
    mine = runs.my_runs()
    free = runs.limits()["live"] - sum(i.live for i in mine)
    if free < len(configs):
        st.session_state["home.message"] = (
            f"This starts {len(configs)} runs, and you can have {runs.limits()['live']} waiting or training at once "
            f"({free} free now). Stop some on the Train page first.")
        return False
    started = [runs.start(c) for c in configs]
    st.session_state[CURRENT] = started[0].id
    st.session_state["train.overlay"] = [r.id for r in started]
    st.session_state.setdefault("train.overlay_seen", set()).update(r.id for r in started)
    return True


def classic_vs_modern() -> None:
    """Exercise 1: the chapter's LeNet-5 and the modernised one, from the same seed."""
    if _queue([TrainConfig(model=preset("classic")), TrainConfig(model=preset("modern"))]):
        st.session_state["home.go"] = "views/train.py"


def kernel_sweep() -> None:
    """Exercise 2: the modern LeNet with 3x3, 5x5 and 7x7 kernels, trained one after the other."""
    if _queue([TrainConfig(model=preset("modern").replace(kernel_size=k)) for k in KERNELS]):
        st.session_state["home.go"] = "views/train.py"


def pullovers_vs_coats() -> None:
    """Exercise 3: the chapter's network's maps for a pullover and a coat, side by side."""
    st.session_state.update({"model": "shipped:fashion-classic", "act_view": "Compare two inputs",
                             "act_a_source": "Test image", "act_b_source": "Test image",
                             "act_a_class": "Pullover", "act_b_class": "Coat"})
    st.session_state["home.go"] = "views/activations.py"
