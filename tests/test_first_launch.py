"""First launch: every page opens without an error, with no data and no network, and with data.

Without data, Train and Evaluate say which data set is missing and how to get it. The pages
are the ones lenet_lab.py lists plus any file in views/, so a new page is covered without edits here."""
import re
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import lenet_core.data as data_module
from lenet_core.data import DATASETS
from synthetic import synthetic_idx

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "lenet_lab.py"
LISTED = re.findall(r"""st\.Page\(\s*["']([^"']+\.py)["']""", APP.read_text())
PAGES = sorted(set(LISTED) | {f"views/{p.name}" for p in (ROOT / "views").glob("*.py") if p.name != "__init__.py"})
NEEDS_DATA = {"views/train.py", "views/evaluate.py"}  # nothing to show without a data set


def _offline(name):
    raise OSError(f"<urlopen error [Errno -3] Temporary failure in name resolution> ({name}, simulated)")


@pytest.fixture
def launch_env(tmp_path, monkeypatch):
    """A first launch: empty data and cache folders, no system copy, downloads failing as offline."""
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("LENET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LENET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LENET_LECTURER_TOKEN", "a-token-long-enough-to-use")  # so that the Class page is listed too
    monkeypatch.setattr(data_module, "SYSTEM_DIRS", {})
    monkeypatch.setattr(data_module, "_download", _offline)
    st.cache_resource.clear()  # data sets and models cached by an earlier test in this process
    yield tmp_path / "data"
    st.cache_resource.clear()


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    if page != LISTED[0]:
        at.switch_page(page).run()
    return at


def page_text(at: AppTest) -> str:
    """Every string an element shows (markdown, alerts, captions, labels...)."""
    texts = []
    for node in at.main:
        for attr in ("value", "body", "label"):
            try:
                value = getattr(node, attr)
            except Exception:
                continue
            if isinstance(value, str):
                texts.append(value)
    return "\n".join(texts)


def exceptions(at: AppTest) -> list[str]:
    return [f"{e.message}\n{''.join(e.stack_trace)}" for e in at.exception]


def test_pages_are_discovered():
    assert LISTED and LISTED[0] == "views/home.py"
    assert {"views/train.py", "views/draw.py", "views/activations.py", "views/evaluate.py",
            "views/classroom.py"} <= set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_page_opens_without_data_or_network(page, launch_env):
    at = open_page(page)
    assert not at.exception, exceptions(at)
    text = page_text(at)
    assert "Traceback" not in text
    if page in NEEDS_DATA:
        # The loader's message: what is missing, where it looked, and how to get it.
        assert re.search(r"missing|not available", text, re.I), text
        assert "LENET_DATA_DIR" in text and re.search(r"fashion-mnist|mnist", text, re.I), text


@pytest.mark.parametrize("page", PAGES)
def test_page_opens_with_data(page, launch_env):
    for folder, _, _ in DATASETS.values():
        synthetic_idx(launch_env / folder, n_train=64, n_test=64)
    at = open_page(page)
    assert not at.exception, exceptions(at)
    assert "data set is not available" not in page_text(at)
