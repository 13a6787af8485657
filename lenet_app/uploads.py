"""Checkpoint uploads on the Train page: checked (lenet_core.checkpoint), kept as a run folder of
this browser, and the upload itself let go at once, so a large file does not stay in the server's
memory (the uploader gets a new key, and Streamlit drops the old one's files)."""
from __future__ import annotations

import streamlit as st

from lenet_core.checkpoint import UPLOAD_MAX_MB, UPLOAD_MAX_BYTES, CheckpointError, load_checkpoint

from . import runs
from .session import markdown_text
from .datasets import DATASET_LABELS



def _uploader_key() -> str:
    return f"train.upload.{st.session_state.get('train.uploads', 0)}"


def accept(data: bytes, filename: str) -> tuple[str, str]:
    """Keep an uploaded checkpoint as a run of this browser, or say why not: ("ok" | "error", message)."""
    try:
        ckpt = load_checkpoint(data, name=filename, limit=UPLOAD_MAX_BYTES)
        runs.add_upload(ckpt, filename)
    except (CheckpointError, runs.LimitError) as e:
        return "error", f"**{markdown_text(filename)}** was not loaded: {markdown_text(e)}"
    acc = ckpt.metrics.get("test_accuracy")
    return "ok", (f"Loaded **{markdown_text(filename)}** ({DATASET_LABELS.get(ckpt.dataset, ckpt.dataset)}"
                  + (f", {acc:.1%} test accuracy" if acc is not None else "")
                  + "). It is listed under Your runs: continue it from *Start from*, or open it on Draw.")


def _received() -> None:
    f = st.session_state.get(_uploader_key())
    st.session_state["train.uploads"] = st.session_state.get("train.uploads", 0) + 1  # let the file go
    if f is not None:
        st.session_state["train.upload_result"] = accept(f.getvalue(), f.name)


def upload_box() -> None:
    st.file_uploader("Upload a checkpoint", type=["pt"], key=_uploader_key(), on_change=_received,
                     max_upload_size=UPLOAD_MAX_MB,
                     help="A .pt file downloaded from this page (or written by `lenet train`), at most "
                          f"{UPLOAD_MAX_BYTES:,} bytes.")
    if result := st.session_state.get("train.upload_result"):
        (st.error if result[0] == "error" else st.success)(result[1])
