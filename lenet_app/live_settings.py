"""The run panel's controls for a run that trains or is paused: its learning rate (and momentum, for
the momentum optimizer) changed on the fly, and steps taken by hand while it is paused. Each goes to
the run's control file; the worker applies it between two steps and records it in the run."""
from __future__ import annotations

import streamlit as st

from lenet_core.runs import Run, RunInfo
from lenet_core.scenarios import Scenario, load_scenarios
from lenet_core.settings import ConfigError
from lenet_core.train import live_settings

from . import runs
from .controls import LR_VALUES

# Slider stops: those of the Start controls, and exercise 1's 0.9 (the lecture's "raise it now").
LR_STOPS = tuple(sorted({*LR_VALUES, 0.3, 0.9, 2.0}))
MOMENTUM_STOPS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)
LABELS = {"lr": "Learning rate, now", "momentum": "Momentum, now"}


def current(info: RunInfo) -> dict[str, float]:
    """What each live setting is or is about to be: asked for and not yet taken, else the last
    change, else the value it started with."""
    group = {"lr": info.config.lr, "momentum": 0.9}
    for change in info.changes:
        group[change["setting"]] = change["value"]
    asked = Run(info.path).control().get("settings")
    if isinstance(asked, dict):
        group.update({k: v for k, v in asked.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return {name: float(group[name]) for name in live_settings(info.config)}


def _changed(info: RunInfo, name: str, key: str) -> None:
    try:
        runs.change_settings(info, **{name: st.session_state[key]})
    except ConfigError as e:  # it ended meanwhile, or a value it cannot take
        st.session_state["train.message"] = f"The {name} was not changed: {e.message}"


def planned(info: RunInfo) -> Scenario | None:
    """The lecture scenario picked on this page, when it plans a live change and this run is its."""
    picked = st.session_state.get("train.scenario")
    scenario = next((s for s in load_scenarios()[0] if s.key == picked), None) if picked else None
    return scenario if scenario and scenario.live and scenario.config == info.config else None


def _apply_plan(info: RunInfo, values: dict) -> None:
    try:
        runs.change_settings(info, **values)
    except ConfigError as e:
        st.session_state["train.message"] = f"The planned change was not made: {e.message}"


def _step(info: RunInfo, steps) -> None:
    try:
        runs.step_by_hand(info, steps)
    except ConfigError as e:
        st.session_state["train.message"] = f"No step taken: {e.message}"


def show(info: RunInfo) -> None:
    """The controls, for a run this browser controls that trains or is paused."""
    if not runs.can_control(info) or info.status not in ("running", "paused"):
        return
    values = current(info)
    with st.container(horizontal=True, vertical_alignment="bottom", key="live_settings"):
        for name, value in values.items():
            stops = sorted(set(LR_STOPS if name == "lr" else MOMENTUM_STOPS) | {value})
            key = f"live.{name}.{info.id}"
            if st.session_state.get(key) != value:  # follow changes made elsewhere (the CLI, another tab)
                st.session_state[key] = value
            st.select_slider(LABELS[name], stops, key=key, format_func=lambda v: f"{v:g}", width=300,
                             on_change=_changed, args=(info, name, key),
                             help="Takes effect from the run's next step; the change is marked on its curves."
                             if name == "lr" else "SGD's momentum, from the next step.")
        if info.status == "paused":
            st.button("One step", icon=":material/skip_next:", on_click=_step, args=(info, 1), key="live.step",
                      help="One minibatch: forward, backward, one optimizer step; the curves, filters and maps "
                           "then show the weights after it.")
            st.button("One epoch", icon=":material/fast_forward:", on_click=_step, args=(info, "epoch"),
                      key="live.epoch", help="To the end of this epoch (evaluated on the test set), then paused again.")
    if (scenario := planned(info)) is not None:
        plan = {k: v for k, v in scenario.live.items() if k != "when"}
        st.button(", ".join(f"{k} {v:g}" for k, v in plan.items()) + f" now ({scenario.live['when']})",
                  icon=":material/trending_up:", key="live.plan", on_click=_apply_plan, args=(info, plan),
                  disabled=all(values.get(k) == v for k, v in plan.items()),
                  help=f"What the scenario \"{scenario.title}\" plans; nothing changes until you press it.")
    if info.changes:
        st.caption("Changed while training: " + "; ".join(
            f"{c['setting']} {c['old']:g} → {c['value']:g} at step {c['step']:,}" for c in info.changes))
