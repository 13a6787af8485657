"""Train: set up a LeNet, train it on the server's workers, watch it learn, compare runs."""
import streamlit as st

from lenet_app import controls, feature_views, live_panel, run_views, runs, session
from lenet_app.server import serving
from lenet_app.datasets import device_info, forget_data_failures, get_data, missing_data_markdown
from lenet_app.uploads import upload_box
from lenet_core.scenarios import load_scenarios
from lenet_core.train import TrainConfig

st.title("Train")
st.caption("Set up a LeNet on the left, press **Start training**, and watch it learn. The defaults are the "
           "chapter's LeNet-5 on Fashion-MNIST. Your runs are kept on the server: reload, or come back later.")
mine = runs.my_runs()
controls.init(mine[0].config if mine else TrainConfig())  # a new tab starts from your latest run's settings
sources = {i.id: i for i in mine if not i.live and (i.path / "checkpoint.pt").exists()}
if st.session_state.get("train.source") not in [None, *sources]:
    st.session_state["train.source"] = None
source = sources.get(st.session_state.get("train.source"))
config, problem = controls.read()
if source is not None and config is not None and (config.model, config.dataset) != (source.config.model,
                                                                                  source.config.dataset):
    controls.apply_run(source)  # the architecture of a run continued from is its own
    st.rerun()
data, data_error = get_data(config.dataset if config else st.session_state.get("train.dataset", "fashion-mnist"))


def start():
    try:
        run = runs.start(config, source)
        st.session_state[run_views.CURRENT] = run.id
    except (runs.LimitError, ValueError) as e:
        st.session_state["train.message"] = str(e)


# The controls keep a readable width; the run panel takes the rest, and goes below the controls
# when that is under 460 pixels (a 1024-pixel projector).
st.html('<style>[data-testid="stLayoutWrapper"]:has(> .st-key-train_right) {min-width: 460px}</style>')
with st.container(horizontal=True, gap="large"):
    left = st.container(width=340)
    right = st.container(width="stretch", key="train_right")

with left:
    scenarios, broken = load_scenarios()
    if scenarios:
        by_key = {s.key: s for s in scenarios}
        st.pills("Lecture scenarios", list(by_key), format_func=lambda k: by_key[k].title, key="train.scenario",
                 on_change=lambda: controls.set_to(by_key[st.session_state["train.scenario"]].config)
                 if st.session_state.get("train.scenario") else None,
                 help="Settings your lecturer prepared (scenarios/*.toml): one click sets every control.")
        if picked := by_key.get(st.session_state.get("train.scenario")):
            st.caption(picked.text)
    for message in broken:
        st.warning(f"A scenario file was skipped: {message}")
    controls.architecture(config, problem, fixed=source is not None)
    controls.training(problem, fixed=source is not None, done_epochs=source.epochs_done if source else 0)
    st.subheader(":material/restart_alt: Start from", divider="gray")
    st.selectbox("Weights", [None, *sources], key="train.source", persist_state="session",
                 format_func=lambda r: "new weights (random, from the seed)" if r is None
                 else f"continue {sources[r].name}", on_change=lambda: controls.apply_run(sources[st.session_state[
                     "train.source"]]) if st.session_state.get("train.source") else None,
                 help="New random weights, or carry one of your runs on with new training settings: its curves and "
                      "counters go on where they stopped.")
    upload_box()

with right:
    if session.lecturer_token():  # a class: the lecturer's view shows each student's name
        st.text_input("Your name, for the lecturer's class view", value=session.display_name(), key="train.me",
                      max_chars=session.NAME_MAX, on_change=lambda: session.set_display_name(st.session_state["train.me"]),
                      help="Picked once: this browser keeps it.")
    b1, b2 = st.columns([1, 2], vertical_alignment="center")
    b1.button("Start training", type="primary", icon=":material/play_arrow:", on_click=start,
              disabled=data is None or problem is not None, width="stretch")
    b2.markdown(f":material/memory: Training runs on **{device_info()}**")
    if data_error:
        st.error(missing_data_markdown(data_error), icon=":material/database:")
        st.button("Check again", on_click=forget_data_failures)
    elif problem is not None:
        st.warning("Start is off until the settings are right: see the message on the left.")
    if message := st.session_state.pop("train.message", None):
        st.error(message)
    shown = run_views.current(mine)
    if shown is None:
        st.info("Press **Start training**: the loss and accuracy curves appear here as the network learns.",
                icon=":material/show_chart:")
        live_panel.empty(config.epochs if config else 10, config.model.activation if config else "sigmoid",
                         serving())
    else:
        run_views.panel(shown)
        feature_views.train_panel(shown, run_views.REFRESH_S)

run_views.runs_section()
