"""Run the app under `streamlit run` and drive it with Debian's Chromium, for end-to-end tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
APP_SCRIPT = PROJECT_ROOT / "app.py"
SCREENSHOT_DIR = PROJECT_ROOT / "artifacts" / "screenshots"
LOG_DIR = PROJECT_ROOT / "artifacts" / "logs"  # kept after the run so CI can show why a page failed

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # tests run as root in CI
    "--disable-gpu",
    "--disable-background-networking",  # no network here; stop it trying
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",  # containers often have a 64 MB /dev/shm, which crashes the renderer
]
MISSING_CHROMIUM = f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` (or `make setup`)"
VIEWPORT = {"width": 1400, "height": 1000}

# Streamlit 1.67 puts the script and connection state on the app root element.
APP_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"][data-test-connection-state="CONNECTED"]'


@dataclass
class AppServer:
    url: str
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start_app(
    env: dict[str, str] | None = None,
    script: Path = APP_SCRIPT,
    port: int | None = None,
    timeout: float = 60.0,
) -> AppServer:
    """Start `streamlit run script` on a free port and return once this very process answers.

    `env` is added to the current environment. The caller stops the server (AppServer.stop).
    """
    port = port or free_port()
    # A stale server already on the port would answer the health check while the new one
    # exits quietly, and the tests would run against old code.
    if not port_is_free(port):
        raise RuntimeError(f"port {port} is already in use; refusing to test against whatever is there")

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"streamlit-{port}.log"
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.headless", "true",
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--server.fileWatcherType", "none",  # tests write files; a rerun prompt must not appear mid-test
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = AppServer(url=f"http://127.0.0.1:{port}", proc=proc, log_path=log_path)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}:\n{server.log()[-3000:]}")
        # Streamlit prints the URL only after it has bound the port itself.
        if _health_ok(server.url) and server.url in server.log():
            time.sleep(0.2)
            if proc.poll() is None:
                return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"streamlit did not become healthy within {timeout:.0f} s:\n{server.log()[-3000:]}")


# A CI machine's http_proxy must not see requests meant for our own loopback server.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _health_ok(url: str) -> bool:
    try:
        with _NO_PROXY.open(f"{url}/_stcore/health", timeout=1) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except OSError:
        return False


def launch_chromium(playwright):
    """Debian's Chromium through Playwright (never `playwright install`: it downloads and fails here)."""
    if not CHROMIUM.exists():
        raise FileNotFoundError(MISSING_CHROMIUM)
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def wait_for_app(page, timeout_ms: float = 30_000) -> None:
    """Wait until the app is connected and no script run is in progress.

    After an interaction the rerun may not have started yet when this returns, so follow it
    with a wait for the content the interaction should produce (e.g. `expect(...).to_be_visible()`).
    """
    page.wait_for_selector(APP_IDLE, state="attached", timeout=timeout_ms)


def screenshot(page, name: str) -> Path:
    """Save a full-page PNG to artifacts/screenshots/<name>.png and return its path."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# -- the drawing canvas ----------------------------------------------------------

CANVAS = ".ld-canvas"  # the Draw page's canvas (lenet_app/draw_canvas.py)

def canvas_box(page, settle_ms: int = 50, tries: int = 100) -> dict:
    """The canvas's box once it stops moving: a freshly mounted canvas (first load, or after
    Clear) shifts while its styles load, and a stroke aimed at the old place lands on the page
    instead (selecting text)."""
    box = None
    for _ in range(tries):
        new = page.locator(CANVAS).bounding_box()
        if new is not None and new == box:
            return box
        box = new
        page.wait_for_timeout(settle_ms)
    raise AssertionError(f"the canvas never settled (last box {box})")


def stroke(page, points, box: dict | None = None) -> None:
    """Draw a polyline on the canvas with the mouse; points are fractions of its size."""
    box = box or canvas_box(page)
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=10)
    page.mouse.up()
