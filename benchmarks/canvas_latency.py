"""Draw page in Chromium: the model in the browser while the pen moves, the server on pen-up.

Starts `streamlit run app.py` and opens Draw in a browser with an empty cache, drawing as soon as
the canvas shows. Then it draws digits with the mouse at 60 pointer events per second (real input
events, sent by Chromium's DevTools protocol), clearing the canvas now and then, and prints:

- prediction updates per second while the pen moves (goal at least 30);
- pen move to the new prediction painted: from the move event's timestamp to the frame after
  the canvas drew its answer (median goal under 30 ms, p95 under 60 ms);
- mouse-up to the server's analysis painted: to the moment the page's hidden last element
  (`.draw-done`, data-update N) shows the stroke's number (median goal under 300 ms);
- what the browser downloaded to open Draw the first time, as sent (bytes on the wire), all of it
  and the live model's part (onnxruntime-web and the model), and again on a second visit;
- the time from opening the page to the first live prediction, and to the model being ready.

    python benchmarks/canvas_latency.py [--strokes 12] [--rate 60]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser import CANVAS, canvas_box, launch_chromium, start_app, wait_for_app  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

GOALS = {"updates per second": (30, ">="), "move to prediction median": (30, "<"),
         "move to prediction p95": (60, "<"), "mouse-up to analysis median": (300, "<"),
         "first visit, live part": (5_000_000, "<")}
SHAPES = [
    [(0.3, 0.2), (0.72, 0.2), (0.45, 0.85)],                                       # 7
    [(0.5, 0.15), (0.3, 0.3), (0.28, 0.65), (0.5, 0.85), (0.7, 0.65), (0.72, 0.3), (0.5, 0.15)],  # 0
    [(0.3, 0.25), (0.7, 0.25), (0.3, 0.8), (0.72, 0.8)],                           # 2
    [(0.6, 0.85), (0.6, 0.15), (0.25, 0.6), (0.75, 0.6)],                          # 4
    [(0.7, 0.2), (0.35, 0.2), (0.33, 0.5), (0.65, 0.52), (0.62, 0.82), (0.3, 0.8)],  # 5
    [(0.5, 0.15), (0.5, 0.85)],                                                    # 1
]
SPEED = 0.9  # canvas widths per second: a stroke across the canvas takes about a second

# Pen-up (the canvas's pointer events are composed, so the window sees them; the canvas cancels
# the compatibility mouse events, so there is no mouseup) and, with a
# MutationObserver, the first moment the page's last element shows the number we wait for.
INSTALL = """() => {
  window.__up = null; window.__seen = null; window.__target = Infinity;
  window.addEventListener('pointerup', () => { window.__up = performance.now(); }, true);
  new MutationObserver(() => {
    if (window.__seen !== null) return;
    const done = document.querySelector('.draw-done');
    if (done && +done.dataset.update >= window.__target) window.__seen = performance.now();
  }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def path_of(shape, box, rate):
    """The points the mouse passes, `rate` per second at SPEED."""
    pts = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in shape]
    out = [pts[0]]
    for a, b in zip(pts, pts[1:]):
        length = ((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2) ** 0.5 / box["width"]
        n = max(1, round(length / SPEED * rate))
        out += [(a[0] + (b[0] - a[0]) * k / n, a[1] + (b[1] - a[1]) * k / n) for k in range(1, n + 1)]
    return out


def draw(page, shape, box, rate, release=True) -> float:
    """Draw `shape` at `rate` mouse events per second; returns the seconds the pen moved."""
    path = path_of(shape, box, rate)
    page.mouse.move(*path[0])
    page.mouse.down()
    start = time.perf_counter()
    for k, (x, y) in enumerate(path[1:], 1):
        wait = start + k / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        page.mouse.move(x, y)
    moved = time.perf_counter() - start
    if release:
        page.mouse.up()
    return moved


class Downloads:
    """Bytes on the wire per URL, from the DevTools protocol (gzip as sent; 0 from the cache)."""

    def __init__(self, page):
        self.urls, self.bytes = {}, {}
        cdp = page.context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", lambda e: self.urls.__setitem__(e["requestId"], e["request"]["url"]))
        cdp.on("Network.loadingFinished",
               lambda e: self.bytes.__setitem__(e["requestId"], self.bytes.get(e["requestId"], 0) + e["encodedDataLength"]))
        cdp.send("Network.enable")
        self.cdp = cdp

    def totals(self) -> tuple[int, int]:
        total = sum(self.bytes.values())
        live = sum(n for r, n in self.bytes.items() if "/lenet/ort/" in self.urls.get(r, "")
                   or "/lenet/onnx/" in self.urls.get(r, ""))
        return total, live

    def reset(self):
        self.bytes.clear()


def pad(page, expression: str):
    return page.locator(".ld").evaluate(f"el => {{ const p = el.__lenet; return {expression}; }}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strokes", type=int, default=12)
    ap.add_argument("--rate", type=float, default=60.0, help="pointer events per second")
    ap.add_argument("--clear-every", type=int, default=3)
    args = ap.parse_args()

    cache = tempfile.mkdtemp(prefix="lenet-bench-cache-")
    server = start_app({"LENET_CACHE_DIR": cache, "LENET_RUNS_DIR": tempfile.mkdtemp(prefix="lenet-bench-runs-")})
    results, lines = {}, []
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            downloads = Downloads(page)

            # A cold page: draw as soon as the canvas shows, until the first live prediction.
            page.goto(f"{server.url}/draw")
            page.wait_for_selector(CANVAS)
            results["cold page: canvas shown"] = page.evaluate("() => performance.now()")
            box = canvas_box(page)
            page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.3 * box["height"])
            page.mouse.down()
            k = 0
            while pad(page, "p ? p.updates : 0") == 0:
                k += 1
                page.mouse.move(box["x"] + (0.3 + 0.4 * (k % 2)) * box["width"], box["y"] + (0.3 + 0.002 * k) * box["height"])
                time.sleep(1 / args.rate)
                if k > args.rate * 120:
                    sys.exit("no live prediction within two minutes: " + str(pad(page, "p.live")))
            page.mouse.up()
            results["cold page: model ready"] = pad(page, "p.readyAt")
            results["cold page: first live prediction"] = pad(page, "p.firstAt")
            wait_for_app(page)
            page.wait_for_timeout(2000)  # the page's own late requests (fonts, images)
            results["first visit, everything"], results["first visit, live part"] = downloads.totals()

            # A second visit: what the browser's cache leaves to download.
            downloads.reset()
            page.goto(f"{server.url}/draw")
            page.wait_for_selector(CANVAS)
            page.locator(".ld").wait_for(state="attached")
            page.wait_for_function("el => el.__lenet && el.__lenet.live === 'ready'",
                                   arg=page.locator(".ld").element_handle(), timeout=60_000)
            results["second visit: model ready"] = pad(page, "p.readyAt")
            wait_for_app(page)
            page.wait_for_timeout(2000)
            results["second visit, everything"], results["second visit, live part"] = downloads.totals()

            # Strokes at the given rate.
            page.evaluate(INSTALL)
            drawn, ups, moved_s, updates = 0, [], 0.0, 0
            for i in range(args.strokes):
                if i and i % args.clear_every == 0:
                    page.locator(".ld-clear").click()
                    wait_for_app(page)
                box = canvas_box(page)
                target = int(page.locator(".draw-done").get_attribute("data-update")) + 1
                page.evaluate("n => { window.__target = n; window.__seen = null; window.__up = null; }", target)
                pad(page, "(p.latencies = [], 0)")
                moved = draw(page, SHAPES[i % len(SHAPES)], box, args.rate)
                during = [r for r in pad(page, "p.latencies") if r["drawing"]]
                try:
                    page.wait_for_function("() => window.__seen !== null", polling="raf", timeout=10_000)
                    up = page.evaluate("() => window.__seen - window.__up")
                    ups.append(up)
                except Exception:
                    up = float("nan")
                moved_s += moved
                updates += len(during)
                drawn += 1
                lats = [r["ms"] for r in during]
                lines.append(lats)
                print(f"stroke {i + 1:2d}: {len(during):3d} predictions in {moved:4.2f} s of drawing "
                      f"({len(during) / moved:5.1f}/s), move to prediction median "
                      f"{statistics.median(lats) if lats else float('nan'):5.1f} ms, mouse-up to analysis {up:5.0f} ms",
                      flush=True)
                wait_for_app(page)
            browser.close()
    finally:
        server.stop()

    lats = [x for stroke in lines for x in stroke]
    results["updates per second"] = updates / moved_s
    results["move to prediction median"] = statistics.median(lats)
    results["move to prediction p95"] = percentile(lats, 95)
    results["mouse-up to analysis median"] = statistics.median(ups)
    results["mouse-up to analysis p95"] = percentile(ups, 95)
    print(f"\n{drawn} strokes at {args.rate:.0f} pointer events/s, {len(lats)} live predictions")
    for name, value in results.items():
        unit = "bytes" if "visit," in name else "/s" if "per second" in name else "ms"
        goal = GOALS.get(name)
        verdict = ""
        if goal is not None:
            ok = value >= goal[0] if goal[1] == ">=" else value < goal[0]
            verdict = f"  (goal {goal[1]} {goal[0]:,}: {'ok' if ok else 'MISSED'})"
        shown = f"{value:,.0f}" if unit == "bytes" else f"{value:.1f}"
        print(f"{name:36s} {shown:>12s} {unit}{verdict}")


if __name__ == "__main__":
    main()
