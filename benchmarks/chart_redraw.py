"""What redrawing the live loss-per-step chart costs Chromium, by the number of points drawn.

A bare page (plotly.js only, no Streamlit) holds the Train page's step chart, built by
lenet_app.train_view.step_figure from a made-up 10-epoch `classic` run, and hands it
to `Plotly.react` as often as the live panel redraws (twice a second), the run a
little further along each time. Each kind of page is measured in its own browser for
a window of steady redraws, alternating:

- idle: the chart drawn once, no redraws;
- N points: the chart redrawn with at most N points per curve (the Train page's
  limit is train_view.MAX_POINTS).

Prints Chromium's CPU use in cores for each; the last line is
`ratio <MAX_POINTS points / twice as many>`.

    python benchmarks/chart_redraw.py [--rounds 3] [--seconds 12] [--points 250,500,1000]
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from browser import VIEWPORT, launch_chromium  # noqa: E402
from train_page_overhead import cpu_seconds  # noqa: E402
from lenet_app import live_chart  # noqa: E402
from lenet_app import train_view as tv  # noqa: E402

STEPS_TOTAL, STEPS_PER_REDRAW, FRAMES = 4690, 45, 60  # a 10-epoch run at 90 steps/s, from step 2,500

PAGE = """<!doctype html><html><body style="margin: 0">
<div id="chart" style="width: 1100px"></div>
<script src="plotly.min.js"></script><script src="frames.js"></script><script>
const kind = location.hash.slice(1);
const frames = FRAMES[kind] || FRAMES[Object.keys(FRAMES)[0]];
let k = 0;
function draw() { const f = frames[k++ % frames.length]; Plotly.react("chart", f.data, f.layout, CONFIG); }
draw();
if (kind !== "idle") setInterval(draw, EVERY_MS);
</script></body></html>"""


def made_up_steps(n: int, seed: int = 0) -> list[tuple[int, float]]:
    rng = random.Random(seed)
    return [(i + 1, 0.35 + 1.95 * math.exp(-i / 250) + rng.gauss(0, 0.06)) for i in range(n)]


def frames(max_points: int) -> list[dict]:
    """The step chart as the panel would draw it at successive redraws."""
    steps = made_up_steps(2500 + STEPS_PER_REDRAW * FRAMES)
    out = []
    for k in range(FRAMES):
        figure = tv.step_figure(steps[:2500 + STEPS_PER_REDRAW * k], STEPS_TOTAL, max_points)
        out.append(json.loads(live_chart.figure_json(figure, "loss-per-step")))
    return out


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/index.html"


def measure(pw, url: str, kind: str, seconds: float) -> float:
    browser = launch_chromium(pw)
    try:
        page = browser.new_context(viewport=VIEWPORT).new_page()
        page.goto(f"{url}#{kind}")
        page.wait_for_selector("#chart .main-svg")
        page.wait_for_timeout(3000)  # past loading and the first draws
        c0, t0 = cpu_seconds({"chromium", "chrome"}), time.monotonic()
        time.sleep(seconds)
        return (cpu_seconds({"chromium", "chrome"}) - c0) / (time.monotonic() - t0)
    finally:
        browser.close()


def main(argv=None):
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=12.0, help="length of each measuring window")
    p.add_argument("--points", default=None,
                   help="comma-separated point limits to compare (default: MAX_POINTS/2, MAX_POINTS, 2*MAX_POINTS)")
    args = p.parse_args(argv)
    limits = [int(v) for v in args.points.split(",")] if args.points else \
        [tv.MAX_POINTS // 2, tv.MAX_POINTS, 2 * tv.MAX_POINTS]
    kinds = ["idle", *map(str, limits)]

    with tempfile.TemporaryDirectory(prefix="lenet-redraw-") as tmp:
        folder = Path(tmp)
        live_chart.ensure_plotly_js(folder)
        (folder / "frames.js").write_text(
            f"const FRAMES = {json.dumps({str(n): frames(n) for n in limits})};\n"
            f"const CONFIG = {json.dumps(live_chart.CHART_CONFIG)};\n"
            f"const EVERY_MS = {tv.REFRESH_SECONDS * 1000:g};\n")
        (folder / "index.html").write_text(PAGE)
        server, url = serve(folder)
        results: dict[str, list[float]] = {k: [] for k in kinds}
        try:
            with sync_playwright() as pw:
                for r in range(1, args.rounds + 1):
                    for kind in kinds if r % 2 else kinds[::-1]:
                        results[kind].append(measure(pw, url, kind, args.seconds))
                        label = "idle" if kind == "idle" else f"{kind} points"
                        print(f"round {r}: {label:12s} Chromium {results[kind][-1]:.3f} cores")
        finally:
            server.shutdown()
    med = {k: statistics.median(v) for k, v in results.items()}
    print("median Chromium CPU, a redraw every "
          f"{tv.REFRESH_SECONDS:g} s: " + ", ".join(
              f"{'idle' if k == 'idle' else k + ' points'} {v:.3f}" for k, v in med.items()) + " cores")
    mine, double = str(tv.MAX_POINTS), str(2 * tv.MAX_POINTS)
    if mine in med and double in med:
        print(f"ratio {med[mine] / med[double]:.2f}")


if __name__ == "__main__":
    main()
