"""Class: every run on the server for the lecturer, a leaderboard, and a stop for any run."""
import streamlit as st

from lenet_app import classroom, runs, session
from lenet_core.model import ACTIVATIONS, POOLINGS
from lenet_core.train import OPTIMIZERS

st.title("Class")
if not session.is_lecturer():
    st.markdown("The runs of everyone on this server. For the lecturer: enter the token the server was started "
                "with (`LENET_LECTURER_TOKEN`).")
    with st.form("sign_in"):
        token = st.text_input("Lecturer token", type="password")
        if st.form_submit_button("Open the class view") and not session.sign_in(token):
            st.error("That is not this server's lecturer token.")
    if not session.is_lecturer():
        st.stop()
    st.rerun()

FILTERS = {"activation": ACTIVATIONS, "pooling": POOLINGS, "optimizer": OPTIMIZERS}


@st.fragment(run_every=3)
def room():
    infos = classroom.everyone()
    live = sum(i.live for i in infos)
    students = len({i.owner for i in infos if i.owner})
    st.caption(f"{len(infos)} run{'s' * (len(infos) != 1)} by {students} student{'s' * (students != 1)}; "
               f"{live} waiting or training. "
               "Click a column's name to sort it.")
    # The run's name gets the room: at 1024 pixels it was cut off while other columns had space.
    st.dataframe(classroom.rows(infos), hide_index=True, key="class.table",
                 column_order=("student", "run", "status", "progress", "epochs", "validation", "test"),
                 column_config={
                     "student": st.column_config.TextColumn(width=130),
                     "run": st.column_config.TextColumn(width=250),
                     "status": st.column_config.TextColumn(width=75),
                     "progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent",
                                                                 width=90),
                     "epochs": st.column_config.TextColumn(width=70),
                     "validation": st.column_config.TextColumn(
                         "val. acc.", width=75,
                         help="Validation accuracy of the run's latest epoch: there while it trains."),
                     "test": st.column_config.TextColumn(
                         "test acc.", width=75,
                         help="Test accuracy, once the run has ended (after at least one epoch).")})
    if damaged := classroom.damaged(infos):
        st.warning("Runs with damaged files (what could be read is shown):\n\n"
                   + "\n".join(f"- {session.markdown_text(line)}" for line in damaged[:10]), icon=":material/warning:")
    live_ones = {i.id: i for i in infos if i.live}
    who = classroom.names(infos)
    chosen = st.multiselect("Runs to stop", list(live_ones), key="class.stop",
                            format_func=lambda r: f"{who[live_ones[r].owner]}: {live_ones[r].name}")
    if st.button(f"Stop {len(chosen)} run{'s' * (len(chosen) != 1)}", icon=":material/stop:", disabled=not chosen):
        for run_id in chosen:
            runs.stop(live_ones[run_id])
        st.toast(f"Asked {len(chosen)} run{'s' * (len(chosen) != 1)} to stop.")

    st.subheader(":material/trophy: Leaderboard", divider="gray")
    c1, c2 = st.columns(2)
    setting = c1.selectbox("Best accuracy with", list(FILTERS), key="class.setting", persist_state="session")
    value = c2.selectbox("equal to", [classroom.ANY, *FILTERS[setting]], key=f"class.value.{setting}",
                         persist_state="session")
    board = classroom.leaderboard(infos, setting, value)
    if board:
        st.dataframe(board, hide_index=True, column_config={"accuracy": st.column_config.NumberColumn(format="%.1f%%"),
                                                            "run": st.column_config.TextColumn(width="large")})
    else:
        st.caption("No finished run matches yet.")
    st.caption("Runs trained on this server only: an uploaded checkpoint (status *uploaded*) is listed above but "
               "does not compete.")


room()
