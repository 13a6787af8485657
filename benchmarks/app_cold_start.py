"""App cold start: `streamlit run app.py` to the home page rendered in Chromium.

Each round starts a fresh server (tests/browser.py start_app) and a fresh browser context
(empty cache), and times from the server process's start to
  health:    /_stcore/health answering "ok",
  connected: the page loaded in Chromium and its websocket connected (the script run starts),
  title:     the home page's title and introduction shown (drawn before torch is imported),
  rendered:  the home page's title and content (device line, data sets, shipped models)
            shown in Chromium with the script run finished.
Prints each round and the medians; the goal is a median under 6 s.

    python benchmarks/app_cold_start.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from playwright.sync_api import expect, sync_playwright  # noqa: E402

import browser  # noqa: E402

GOAL_S = 6.0
PHASES = ("health ok", "connected", "title", "home rendered")


def _poll_health(url: str, t0: float, out: dict, stop: threading.Event) -> None:
    while not stop.is_set():
        if browser._health_ok(url):
            out["health"] = time.perf_counter() - t0
            return
        time.sleep(0.02)


def one_round(chromium, env: dict[str, str], script: Path = browser.APP_SCRIPT) -> tuple[float, float, float, float]:
    port = browser.free_port()
    url = f"http://127.0.0.1:{port}"
    times: dict[str, float] = {}
    stop = threading.Event()
    t0 = time.perf_counter()
    poller = threading.Thread(target=_poll_health, args=(url, t0, times, stop), daemon=True)
    poller.start()
    server = browser.start_app(env, script=script, port=port)  # returns once this very process answers
    context = chromium.new_context(viewport=browser.VIEWPORT)
    try:
        page = context.new_page()
        page.goto(server.url)
        page.wait_for_selector('[data-testid="stApp"][data-test-connection-state="CONNECTED"]',
                               state="attached", timeout=60_000)
        connected = time.perf_counter() - t0
        main = page.get_by_test_id("stMain")
        expect(main.get_by_role("heading", name="LeNet Lab")).to_be_visible(timeout=60_000)
        title = time.perf_counter() - t0
        expect(main.get_by_text("Training runs on")).to_be_visible(timeout=60_000)
        expect(main.get_by_text("test accuracy").first).to_be_visible(timeout=60_000)
        browser.wait_for_app(page, timeout_ms=60_000)
        rendered = time.perf_counter() - t0
    finally:
        stop.set()
        context.close()
        server.stop()
    return times.get("health", float("nan")), connected, title, rendered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lenet-coldstart-") as tmp:
        env = {"LENET_CACHE_DIR": tmp, "LENET_RUNS_DIR": tmp}  # home never downloads; keep it that way
        with sync_playwright() as p:
            chromium = browser.launch_chromium(p)
            results = []
            for i in range(1, args.rounds + 1):
                result = one_round(chromium, env)
                results.append(result)
                print(f"round {i}: " + "   ".join(f"{name} {t:5.2f} s" for name, t in zip(PHASES, result)), flush=True)
            chromium.close()
    medians = [statistics.median(r[i] for r in results) for i in range(len(PHASES))]
    verdict = "OK" if medians[-1] < GOAL_S else "SLOW"
    print("median:  " + "   ".join(f"{name} {t:5.2f} s" for name, t in zip(PHASES, medians))
          + f"   (goal < {GOAL_S:.0f} s: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
