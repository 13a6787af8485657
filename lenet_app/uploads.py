"""Checkpoint uploads on the Train page: checked (lenet_core.checkpoint), kept as a run folder of
this browser, and the upload itself let go at once, so a large file does not stay in the server's
memory (the uploader gets a new key, and Streamlit drops the old one's files).

A plain PyTorch state dict (a LeNet trained in the chapter's notebook, or PyTorch's tutorial) is
read by lenet_core.imports: the page shows the architecture it read and the check of what the
weights cannot say (activation, pooling, input scaling) before the model is added."""
from __future__ import annotations

import streamlit as st

from lenet_core.checkpoint import UPLOAD_MAX_BYTES, UPLOAD_MAX_MB, CheckpointError
from lenet_core.imports import SAMPLE, SCALINGS, Architecture, check, read_file
from lenet_core.model import ACTIVATIONS, POOLINGS

from . import run_views, runs
from .session import markdown_text
from .datasets import DATASET_LABELS, get_data, missing_data_markdown

PENDING = "train.import"   # (filename, Architecture) read from an upload, until added or dropped
TRY = "try each"
SCALING_LABELS = {"unit": "[0, 1]: ToTensor() (the chapter)", "symmetric": "[-1, 1]: Normalize(0.5, 0.5) (tutorials)",
                  "standardized": "standardized: Normalize(mean, std)"}


def _uploader_key() -> str:
    return f"train.upload.{st.session_state.get('train.uploads', 0)}"


def accept(data: bytes, filename: str) -> tuple[str, str]:
    """Keep an uploaded checkpoint as a run of this browser, hold a state dict for its check, or say
    why not: ("ok" | "import" | "error", message)."""
    try:
        found = read_file(data, name=filename, limit=UPLOAD_MAX_BYTES)
        if isinstance(found, Architecture):
            st.session_state[PENDING] = (filename, found)
            return "import", (f"**{markdown_text(filename)}** holds a network's weights ({markdown_text(found.layout)}). "
                              "Check what the weights cannot say below, then add it.")
        runs.add_upload(found, filename)
    except (CheckpointError, runs.LimitError) as e:
        return "error", f"**{markdown_text(filename)}** was not loaded: {markdown_text(e)}"
    acc = found.metrics.get("test_accuracy")
    return "ok", (f"Loaded **{markdown_text(filename)}** ({DATASET_LABELS.get(found.dataset, found.dataset)}"
                  + (f", {acc:.1%} test accuracy" if acc is not None else "")
                  + "). It is listed under Your runs: continue it from *Start from*, or open it on Draw.")


def _received() -> None:
    f = st.session_state.get(_uploader_key())
    st.session_state["train.uploads"] = st.session_state.get("train.uploads", 0) + 1  # let the file go
    st.session_state.pop(PENDING, None)
    if f is not None:
        st.session_state["train.upload_result"] = accept(f.getvalue(), f.name)


def _choice(label: str, options, key: str, words=None, help: str = ""):
    picked = st.selectbox(label, [TRY, *options], key=key, help=help,
                          format_func=lambda o: o if o == TRY else (words or {}).get(o, o))
    return None if picked == TRY else picked


def _check(arch: Architecture, data, given: dict):
    """The check for these choices, computed once per upload and choice (18 small evaluations)."""
    key = (id(arch), data.name, tuple(given.values()))
    held = st.session_state.get("train.import.check")
    if held is None or held[0] != key:
        with st.spinner(f"Trying what is not given on {min(SAMPLE, len(data.test_labels)):,} test images…"):
            held = (key, check(arch, data, **given))
        st.session_state["train.import.check"] = held
    return held[1]


def _add(filename: str, arch: Architecture, data, result) -> None:
    try:
        run = runs.add_import(arch, data, result.best, result, filename)
    except runs.LimitError as e:
        st.session_state["train.upload_result"] = ("error", str(e))
        return
    st.session_state.pop(PENDING, None)
    st.session_state[run_views.CURRENT] = run.id
    st.session_state["train.upload_result"] = ("ok", (
        f"Added **{markdown_text(filename)}** as {markdown_text(result.best.label())}: "
        f"{run.info().test_accuracy:.1%} on the whole test set. It is listed under Your runs; open it on Draw, "
        "Activations or Evaluate."))


def import_panel(filename: str, arch: Architecture) -> None:
    """What was read from a state dict, the choices the weights cannot make, their check, and Add."""
    with st.container(border=True, key="train_import"):
        st.markdown(f"**{markdown_text(filename)}**, read as:")
        st.markdown("\n".join(f"- {markdown_text(line)}" for line in arch.describe()))
        dataset = st.selectbox("Trained on", list(DATASET_LABELS), format_func=DATASET_LABELS.get,
                               key="train.import.dataset")
        st.caption("Not in the weights: pick them if you know them, or each is tried on test images and the "
                   "best taken.")
        c1, c2 = st.columns(2)
        with c1:
            activation = _choice("Activation", ACTIVATIONS, "train.import.activation")
        with c2:
            pooling = _choice("Pooling", POOLINGS, "train.import.pooling", {"avg": "average", "max": "max"})
        scaling = _choice("Input scaling", SCALINGS, "train.import.scaling", SCALING_LABELS,
                          help="How its images were scaled before the network saw them.")
        given = {"activation": activation, "pooling": pooling, "scaling": scaling}
        data, problem = get_data(dataset)
        result = None
        if data is None:
            st.error(missing_data_markdown(problem), icon=":material/database:")
        else:
            result = _check(arch, data, given)
            best = result.best
            st.markdown(f"**Check** on {best.count:,} test images, best first:")
            st.markdown("\n".join(f"- **{t.accuracy:.1%}** {markdown_text(t.label())}" + (" ← taken" if t is best
                                                                                          else "")
                                  for t in result.trials[:4]))
            if doubt := result.doubt():
                st.warning(f"Note: {markdown_text(doubt)}.")
        c1, c2 = st.columns(2)
        c1.button("Add to my runs", type="primary", disabled=result is None, width="stretch", key="train.import.add",
                  on_click=_add, args=(filename, arch, data, result))
        c2.button("Cancel", width="stretch", key="train.import.cancel", on_click=_cancel)


def _cancel() -> None:
    st.session_state.pop(PENDING, None)
    st.session_state.pop("train.upload_result", None)


def upload_box() -> None:
    st.file_uploader("Upload a checkpoint or a model's weights", type=["pt", "pth", "params", "tar", "ckpt", "bin"],
                     key=_uploader_key(), on_change=_received, max_upload_size=UPLOAD_MAX_MB,
                     help="A .pt file downloaded from this page (or written by `lenet train`), or the weights of a "
                          "LeNet you trained elsewhere: `torch.save(model.state_dict(), \"lenet.params\")` in the "
                          f"chapter's notebook, or PyTorch's tutorial network. At most {UPLOAD_MAX_BYTES:,} bytes.")
    if result := st.session_state.get("train.upload_result"):
        {"error": st.error, "ok": st.success}.get(result[0], st.info)(result[1])
    if pending := st.session_state.get(PENDING):
        import_panel(*pending)
