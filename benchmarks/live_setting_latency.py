"""From a learning-rate change to the worker training with it, for a run training in the app's pool.

Starts `streamlit run app.py` on a synthetic data set (long epochs), opens the Train page in
Chromium, starts a modern LeNet, then `--rounds` times moves the panel's "Learning rate, now"
slider (one click on its track) and times from the click to the moment the worker applied the
new value (the worker writes that time into the run's status.json, same clock). Side by side, as
many changes written straight to the run's control file (what the slider's callback does, and
`lenet set`), to show the part the worker's polling takes.

    python benchmarks/live_setting_latency.py [--rounds 6]

Last lines: `slider_to_worker_s median p90` and `control_file_to_worker_s median p90`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from browser import VIEWPORT, launch_chromium, start_app, wait_for_app  # noqa: E402
from synthetic import synthetic_idx  # noqa: E402

from lenet_app.live_settings import LR_STOPS  # noqa: E402
from lenet_core.runs import Run, list_runs  # noqa: E402


def changes(run: Run) -> tuple[int, float | None]:
    st = run.status()
    return len(st.get("changes") or []), st.get("setting_applied")


def wait_applied(run: Run, before: int, timeout_s: float = 30) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n, applied = changes(run)
        if n > before:
            return applied
        time.sleep(0.005)
    raise SystemExit("the worker did not apply the change within 30 s")


def click_slider(page, value: float) -> float:
    """One click on the slider's track where `value` sits; returns the click's wall-clock time."""
    slider = page.get_by_role("slider", name="Learning rate, now")
    thumb = slider.locator("xpath=../..").bounding_box()["width"]
    box = slider.locator("xpath=../../..").bounding_box()
    i = LR_STOPS.index(value)
    x = box["x"] + thumb / 2 + (box["width"] - thumb) * i / (len(LR_STOPS) - 1)
    t = time.time()
    page.mouse.click(x, box["y"] + box["height"] / 2)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="lenet-live-bench-"))
    synthetic_idx(tmp / "data" / "fashion-mnist", n_train=16384, n_test=256)
    env = {"LENET_DATA_DIR": str(tmp / "data"), "LENET_RUNS_DIR": str(tmp / "runs"),
           "LENET_CACHE_DIR": str(tmp / "cache")}
    server = start_app(env)
    values = [0.05, 0.1] * args.rounds
    slider_s, file_s = [], []
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{server.url}/train")
            wait_for_app(page)
            page.get_by_role("button", name="modern", exact=True).click()
            wait_for_app(page)
            epochs = page.get_by_role("spinbutton", name="Epochs")
            epochs.fill("200")
            epochs.press("Enter")
            wait_for_app(page)
            page.get_by_role("button", name="Start training").click()
            wait_for_app(page)
            page.get_by_role("slider", name="Learning rate, now").wait_for()
            (info,) = list_runs(tmp / "runs")
            run = Run(info.path)
            while run.status().get("steps_done", 0) < 5:
                time.sleep(0.1)
            for value in values[:args.rounds]:
                before = changes(run)[0]
                t = click_slider(page, value)
                slider_s.append(wait_applied(run, before) - t)
                wait_for_app(page)
                page.wait_for_timeout(500)
            for value in values[:args.rounds]:
                before = changes(run)[0]
                t = time.time()
                run.change_settings(lr=value + 0.01)
                file_s.append(wait_applied(run, before) - t)
                time.sleep(0.3)
            run.request(stop=True)
            steps = run.status().get("steps_done", 0)
            rate = run.status().get("samples_per_s") or 0
            browser.close()
    finally:
        server.stop()
    print(json.dumps({"slider_to_worker_s": slider_s, "control_file_to_worker_s": file_s, "steps": steps,
                      "samples_per_s": rate}))

    def line(name, xs):
        xs = sorted(xs)
        return f"{name} {statistics.median(xs):.3f} {xs[max(0, round(0.9 * len(xs)) - 1)]:.3f}"

    print(line("slider_to_worker_s", slider_s))
    print(line("control_file_to_worker_s", file_s))


if __name__ == "__main__":
    main()
