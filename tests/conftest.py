"""Fixtures for end-to-end tests: a `streamlit run` server and a Chromium page.

A test uses them like this:

    from browser import screenshot, wait_for_app

    def test_home(app_server, browser_page):
        browser_page.goto(app_server.url)
        wait_for_app(browser_page)
        screenshot(browser_page, "home")
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

import browser
from browser import APP_SCRIPT, VIEWPORT, AppServer, launch_chromium, screenshot, start_app
from lenet_core.data import DATASETS
from synthetic import synthetic_idx


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets browser_page see whether its test failed, to keep a screenshot of the failure.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """A LENET_DATA_DIR with small learnable stand-ins for both data sets (seconds to train)."""
    root = tmp_path_factory.mktemp("data")
    for folder, _, _ in DATASETS.values():
        synthetic_idx(root / folder, n_train=256, n_test=64)
    return root


@pytest.fixture(autouse=True)
def no_saved_runs(monkeypatch, tmp_path_factory):
    """The app lists the run folders under LENET_RUNS_DIR (default: runs/ in the project):
    tests see an empty one unless they set their own, whatever a developer has saved there."""
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path_factory.mktemp("no-runs")))


@pytest.fixture(scope="session")
def app_env(tmp_path_factory, tiny_data_dir) -> dict[str, str]:
    """Environment for the app under test: tiny data, and runs/cache that start empty."""
    return {
        "LENET_DATA_DIR": str(tiny_data_dir),
        "LENET_RUNS_DIR": str(tmp_path_factory.mktemp("runs")),
        "LENET_CACHE_DIR": str(tmp_path_factory.mktemp("cache")),
    }


@pytest.fixture(scope="session")
def app_server(app_env) -> AppServer:
    """One `streamlit run app.py` for the whole session (a cold start costs 4-6 s)."""
    server = start_app(app_env, script=APP_SCRIPT)
    yield server
    server.stop()


@pytest.fixture
def start_server():
    """Factory for a test that needs its own server (another script or env); stops them after."""
    servers: list[AppServer] = []

    def start(env: dict[str, str] | None = None, script: Path = APP_SCRIPT) -> AppServer:
        servers.append(start_app(env, script=script))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def chromium():
    if not browser.CHROMIUM.exists():
        # A missing browser is a broken setup, not a reason to skip the end-to-end tests.
        pytest.fail(browser.MISSING_CHROMIUM, pytrace=False)
    with sync_playwright() as p:
        chromium = launch_chromium(p)
        yield chromium
        chromium.close()


@pytest.fixture
def browser_page(chromium, request):
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        screenshot(page, "FAILED-" + re.sub(r"[^\w.-]+", "_", request.node.name))
    context.close()


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty cache, no Debian copy and a download that fails, as on a machine with no
    network; the app's data cache is emptied before and after. Yields a temporary folder."""
    import lenet_core.data
    from lenet_app import datasets

    monkeypatch.setenv("LENET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(lenet_core.data, "SYSTEM_DIRS", {})

    def no_download(name):
        raise OSError("no network in tests")

    monkeypatch.setattr(lenet_core.data, "_download", no_download)
    datasets._load_data_cached.clear()
    datasets.forget_data_failures()
    yield tmp_path
    datasets._load_data_cached.clear()
    datasets.forget_data_failures()
