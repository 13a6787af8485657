"""The Train page's run sections: the panel of the run on show (progress, curves, its buttons) and
the list of this browser's runs (table, overlay, actions), which follows its runs as they train."""
from __future__ import annotations

import time

import streamlit as st

from lenet_core.data import DATASETS
from lenet_core.runs import RESUMABLE, Run, RunInfo, export_checkpoint

from . import curves, live_panel, live_settings, runs, scrubber, session
from .onnx_models import onnx_download
from .server import serving

CURRENT = "train.current"
OVERLAY = "train.overlay_ids"   # the runs drawn together, by id: kept here, not in a widget's state
PICKED = "train.picked_id"      # the run the actions below the overlay act on, by id
OVERLAY_MAX = 8
REFRESH_S = 10.0  # the list of runs refreshes itself this often while one trains (each costs the browser)


def current(mine: list[RunInfo]) -> RunInfo | None:
    """The run on show: the one picked last, else the newest live one, else the newest."""
    by_id = {i.id: i for i in mine}
    if st.session_state.get(CURRENT) not in by_id:
        live = [i for i in mine if i.live]
        st.session_state[CURRENT] = (live or mine)[0].id if mine else None
    return by_id.get(st.session_state[CURRENT])


def act(action, *args) -> None:
    """Run a button's action; a refused one leaves its message for the page."""
    try:
        action(*args)
    except runs.LimitError as e:
        st.session_state["train.message"] = str(e)


def panel(info: RunInfo) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        st.subheader(f"{info.name} · {runs.status_label(info)}", anchor=False)
        if runs.can_control(info):
            if info.status == "running":
                st.button("Pause", icon=":material/pause:", on_click=act, args=(runs.pause, info, True))
            elif info.status == "paused":
                st.button("Resume", icon=":material/play_arrow:", on_click=act, args=(runs.pause, info, False))
            if info.live:
                st.button("Stop", icon=":material/stop:", on_click=act, args=(runs.stop, info))
            elif info.status in RESUMABLE:
                st.button("Resume", icon=":material/play_arrow:", on_click=act, args=(runs.resume, info),
                          help="Carry it on in the same folder to its planned epochs.")
    live_settings.show(info)
    if info.status in ("finished",):
        st.success(f"{info.message} Test accuracy **{info.test_accuracy:.1%}**." if info.test_accuracy is not None
                   else info.message, icon=":material/check_circle:")
    elif info.status in ("diverged", "failed", "interrupted"):
        st.error(info.message, icon=":material/error:")
    elif info.status == "stopped":
        by = runs.stopped_by_lecturer(info)
        st.info(f"**{by}** {info.message}" if by else info.message, icon=":material/stop_circle:")
    damage_notes(info)
    live_panel.show(info, serving())
    # A toggle, not an expander: an expander's content is drawn (and redrawn) even while closed.
    if st.toggle("Epoch by epoch: watch the filters and maps form", key="train.scrubber", persist_state="session",
                 help="Replays the conv layers' maps and filters of this run's probe images, epoch by epoch."):
        replay(info)


def damage_notes(info: RunInfo) -> None:
    """What in the run's folder is damaged (what could be read is shown), and what resuming mended."""
    if problems := runs.problems_of(info.path):
        st.warning("Some of this run's files are damaged; what could be read is shown.\n\n"
                   + "\n".join(f"- {session.markdown_text(p)}" for p in problems), icon=":material/warning:")
    if info.repaired:
        st.info("Mended when it was last resumed:\n\n" + "\n".join(f"- {session.markdown_text(p)}"
                                                                   for p in info.repaired), icon=":material/build:")


def replay(info: RunInfo) -> None:
    """The scrubber of the run on show, following its new epochs while it trains."""

    @st.fragment(run_every=REFRESH_S if info.live else None)
    def body():
        if not scrubber.show(info.path, DATASETS[info.config.dataset][2], key="train.scrub", width_px=700):
            st.caption("Nothing recorded yet: the first frame is written when the run starts.")

    body()


def _choose(run_id: str) -> None:
    st.session_state[CURRENT] = run_id


def _overview(mine: list[RunInfo]) -> tuple[list[dict], dict, dict]:
    """The table's rows, the overlay's runs and their colours, remade only when a run's status or
    epochs change: between two epochs a rerun sends the browser the same table and figure, which it
    keeps as they are instead of drawing them again."""
    signature = tuple((i.id, i.name, i.status, i.epochs_done, len(i.changes)) for i in mine)
    cached = st.session_state.get("train.overview")
    if cached is None or cached[0] != signature:
        lives = {i.id: Run(i.path).live() for i in mine[:OVERLAY_MAX * 4]}
        cached = (signature, runs.runs_table(mine), lives, {i.id: runs.colour(i) for i in mine})
        st.session_state["train.overview"] = cached
    return cached[1], cached[2], cached[3]


def labels(mine: list[RunInfo]) -> dict[str, str]:
    """Run id -> the name a picker shows: its name, and where two runs still share one (runs from
    before names were made unique, the command line's), when it was started."""
    counts: dict[str, int] = {}
    for i in mine:
        counts[i.name] = counts.get(i.name, 0) + 1
    return {i.id: i.name if counts[i.name] == 1 else f"{i.name} ({time.strftime('%d %b %H:%M:%S', time.localtime(i.created))})"
            for i in mine}


def _keep(state_key: str, widget_key: str) -> None:
    st.session_state[state_key] = st.session_state.get(widget_key)


def overlay_choice(ids: list[str]) -> list[str]:
    """The runs to overlay: the ones chosen (that still exist), and each new run as it appears."""
    seen = st.session_state.setdefault("train.overlay_seen", set())
    chosen = [r for r in st.session_state.get(OVERLAY) or [] if r in ids]
    chosen += [r for r in ids if r not in seen and r not in chosen][:max(0, OVERLAY_MAX - len(chosen))]
    seen.update(ids)
    st.session_state[OVERLAY] = chosen[:OVERLAY_MAX]
    return st.session_state[OVERLAY]


def runs_section() -> None:
    """Your runs: refreshed every few seconds while one of them is waiting or training."""
    mine = runs.my_runs()
    every = REFRESH_S if any(i.live for i in mine) else None

    @st.fragment(run_every=every)
    def body():
        mine = runs.my_runs()
        st.subheader(":material/compare: Your runs", divider="gray")
        if not mine:
            st.caption("Every run you start, and every checkpoint you upload, is kept here (on the server's disk) "
                       "to compare: e.g. classic against modern, or kernel 3 against 5.")
            return
        if any(i.live for i in mine) != (every is not None):
            st.rerun()  # a run started or ended: the whole page, once (its panel, its buttons)
        table, lives, colours = _overview(mine)
        st.dataframe(table, hide_index=True)
        names = labels(mine)
        # The pills show what this page keeps (by run id), whatever the widget remembered: a rename
        # or a new run changes the pills' labels, and Streamlit would then start them afresh.
        st.session_state["train.overlay"] = overlay_choice(list(names))
        picked = st.pills("Overlay", list(names), selection_mode="multi", key="train.overlay",
                          format_func=names.get, on_change=_keep, args=(OVERLAY, "train.overlay"),
                          help=f"The runs whose curves are drawn together (at most {OVERLAY_MAX}).")[:OVERLAY_MAX]
        st.plotly_chart(curves.overlay_figure([(names[r], lives.get(r) or {}, colours[r]) for r in picked]),
                        theme="streamlit", key="train.overlay_chart", config={"displayModeBar": False})
        actions(mine, names)

    body()


def _rename(info: RunInfo) -> None:
    # The box's text as it is when Rename is clicked (a button's args are fixed when it is drawn,
    # before the new name was typed).
    act(runs.rename, info, st.session_state.get(f"train.name.{info.id}", ""))


def actions(mine: list[RunInfo], names: dict[str, str]) -> None:
    """The actions on one run, picked by id: the picker keeps that id across renames and new runs."""
    by_id = {i.id: i for i in mine}
    if st.session_state.get(PICKED) not in by_id:
        st.session_state[PICKED] = st.session_state.get(CURRENT) if st.session_state.get(CURRENT) in by_id else mine[0].id
    st.session_state["train.picked"] = st.session_state[PICKED]
    c1, c2 = st.columns([2, 3], vertical_alignment="bottom")
    picked = c1.selectbox("Run", list(by_id), format_func=names.get, key="train.picked", on_change=_keep,
                          args=(PICKED, "train.picked"))
    info = by_id[picked]
    with c2.container(horizontal=True):
        st.button("Show above", icon=":material/visibility:", on_click=_choose, args=(info.id,))
        if info.live:
            st.button("Stop it", icon=":material/stop:", on_click=act, args=(runs.stop, info), key="train.stop_picked")
        elif info.status in RESUMABLE:
            st.button("Resume it", icon=":material/play_arrow:", on_click=act, args=(runs.resume, info),
                      key="train.resume_picked")
        if (info.path / "checkpoint.pt").exists():
            st.download_button("Download", data=lambda: export_checkpoint(Run(info.path)), icon=":material/download:",
                               file_name=f"lenet-{session.clean_name(info.name).replace(' ', '')[:60]}.pt",
                               mime="application/octet-stream", on_click="ignore",
                               help="Weights, settings and curves in one .pt file: upload it here to continue it, "
                                    "or train it on with `lenet`.")
            st.download_button("ONNX", data=lambda: onnx_download(info.path), icon=":material/download:",
                               file_name=f"lenet-{session.clean_name(info.name).replace(' ', '')[:60]}.onnx",
                               mime="application/octet-stream", on_click="ignore", key=f"train.onnx.{info.id}",
                               help="The model as ONNX (class probabilities and the first two conv layers' maps): "
                                    "it opens in Netron and runs in onnxruntime, as `lenet export` writes it.")
        with st.popover("Rename or delete", icon=":material/edit:"):
            if st.session_state.get(f"train.name.{info.id}") is None:
                st.session_state[f"train.name.{info.id}"] = info.name
            st.text_input("New name", max_chars=session.NAME_MAX, key=f"train.name.{info.id}")
            st.button("Rename", on_click=_rename, args=(info,))
            st.button("Delete this run", type="primary", disabled=info.live, on_click=act, args=(runs.delete, info),
                      help="Removes its folder from the server for good." if not info.live else "Stop it first.")

