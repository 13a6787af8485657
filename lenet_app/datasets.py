"""The data sets as the pages use them: loaded once per server, with a message that says what is
missing and how to get it, never a traceback."""
from __future__ import annotations

import re
import time

import streamlit as st

from lenet_core.data import DATASETS, DataUnavailableError, ImageData, candidate_dirs, find_local, load_dataset
from lenet_core.train import device_label, resolve_device

DATASET_LABELS = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST digits"}


@st.cache_resource(show_spinner=False)
def _load_data_cached(name: str) -> ImageData:
    return load_dataset(name)


_recent_failures: dict[tuple, tuple[float, str]] = {}
RETRY_AFTER_S = 30


def get_data(name: str) -> tuple[ImageData | None, str | None]:
    """(data, None) or (None, the message that says what is missing and how to get it).
    A failed download is not retried on every rerun, only after RETRY_AFTER_S or
    as soon as a local copy appears."""
    key = (name, tuple(candidate_dirs(name)))  # a changed LENET_DATA_DIR is a new attempt
    failed = _recent_failures.get(key)
    if failed and time.time() - failed[0] < RETRY_AFTER_S and find_local(name) is None:
        return None, failed[1]
    try:
        return _load_data_cached(name), None
    except DataUnavailableError as e:
        _recent_failures[key] = (time.time(), str(e))
        return None, str(e)


_CODE = re.compile(r"sudo apt-get install [\w-]+|--data-dir DIR|\b[A-Z_]+=[\w/.-]*\w"
                   r"|(?<![\w`])(?:/|[\w.-]+/)[\w./-]*[\w/]")


def missing_data_markdown(message: str) -> str:
    """The data loader's 'what is missing and how to get it' as Markdown: its bullet lines
    become a list, and paths and commands become code spans (copyable; underscores kept)."""
    lines = []
    for line in message.splitlines():
        body = _CODE.sub(lambda m: f"`{m.group(0)}`", line.strip())
        lines.append(body if body.startswith("- ") else f"\n{body}\n")
    return "\n".join(lines).strip()


def forget_data_failures() -> None:
    """Let the next get_data try again at once (a "Check again" button)."""
    _recent_failures.clear()


def local_data_status() -> dict[str, str | None]:
    """Data set -> folder holding a local copy, or None. Never downloads."""
    return {name: (str(p) if (p := find_local(name)) else None) for name in DATASETS}


@st.cache_resource(show_spinner=False)
def device_info() -> str:
    return device_label(resolve_device("auto"))
