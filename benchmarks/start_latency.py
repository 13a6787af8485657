"""Start to the first loss point on the chart, in Chromium, with the app already open.

Starts `streamlit run app.py` (its worker pool warms up meanwhile: torch imported, the data set
loaded), opens the Train page, and `--runs` times presses Start and times, in the page, from the
click to the moment the loss chart shows a point; each run is stopped before the next. The first
press is included: a lecturer's first Start is the one the room watches.

    python benchmarks/start_latency.py [--runs 5] [--preset modern]

Last line: `start_to_first_point_s X` (the median). Goal: X < 2.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser import VIEWPORT, launch_chromium, start_app, wait_for_app  # noqa: E402

# In the page: the time from the click to the first point on the loss-per-step chart.
ARM = """() => new Promise((resolve) => {
  const button = [...document.querySelectorAll('button')].find(b => b.textContent.includes('Start training'));
  const t0 = performance.now();
  const check = () => {
    const x = document.querySelector('[data-chart="loss-per-step"]')?._fullData?.[0]?.x;
    const live = [...document.querySelectorAll('h3')].some(h => /· (training|finished)$/.test(h.textContent.trim()));
    if (x && x.length && live) return resolve((performance.now() - t0) / 1000);
    requestAnimationFrame(check);
  };
  button.click();
  requestAnimationFrame(check);
})"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--preset", default="classic", choices=("classic", "modern"))
    p.add_argument("--data-dir", default=os.environ.get("LENET_DATA_DIR") or str(ROOT.parent / "shared" / "data"))
    p.add_argument("--warm-s", type=float, default=20, help="seconds the open app waits before the first Start")
    args = p.parse_args(argv)

    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="lenet-start-"))
    server = start_app({"LENET_DATA_DIR": str(Path(args.data_dir).resolve()), "LENET_RUNS_DIR": str(tmp / "runs"),
                        "LENET_CACHE_DIR": str(tmp / "cache")})
    times = []
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.goto(f"{server.url}/train")
            wait_for_app(page)
            if args.preset == "modern":
                page.get_by_role("button", name="modern", exact=True).click()
                wait_for_app(page)
            page.wait_for_timeout(args.warm_s * 1000)  # the app is open: its workers have warmed up
            for i in range(args.runs):
                seconds = page.evaluate(ARM)
                times.append(seconds)
                print(f"run {i + 1}: Start to the first loss point {seconds:.2f} s")
                wait_for_app(page)
                page.get_by_test_id("stMain").get_by_role("button", name="Stop", exact=True).click()
                page.get_by_role("heading", name=re.compile(r"· (stopped|finished)$")).wait_for(timeout=30_000)
                wait_for_app(page)
                page.wait_for_timeout(1000)
            browser.close()
    finally:
        server.stop()
    print(f"median {statistics.median(times):.2f} s, max {max(times):.2f} s over {len(times)} starts (goal: < 2 s)")
    print(f"start_to_first_point_s {statistics.median(times):.2f}")


if __name__ == "__main__":
    main()
