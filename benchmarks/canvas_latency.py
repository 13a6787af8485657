"""Draw page latency: mouse-up on the canvas to the prediction updated on the page, in Chromium.

Starts `streamlit run app.py`, opens Draw, and draws strokes (clearing the canvas now and then, so
the drawing and the prediction keep changing). For each stroke it times, inside the browser, from
the mouseup event to the moment the page's hidden last element (`.draw-done`, data-update N) shows
the new N: by then the prediction and everything after it have arrived. Its data-ms, the server's
own time for the run (top of the page script to its end), is collected too. The canvas
itself waits 200 ms after mouse-up before it sends the drawing, so ~225 ms is the floor.

    python benchmarks/canvas_latency.py [--strokes 36] [--warmup 2]
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser import canvas_box, launch_chromium, start_app, stroke, wait_for_app  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

GOALS = {"latency median": 350, "latency p95": 600, "server median": 80}  # server: with attribution per stroke
DONE = re.compile(r'data-update="(\d+)" data-ms="(\d+)"')
# Shapes as polylines in fractions of the canvas: each stroke changes the drawing.
SHAPES = [
    [(0.3, 0.2), (0.72, 0.2), (0.45, 0.85)],                               # 7
    [(0.5, 0.15), (0.5, 0.85)],                                            # 1
    [(0.5, 0.15), (0.3, 0.3), (0.28, 0.65), (0.5, 0.85), (0.7, 0.65),
     (0.72, 0.3), (0.5, 0.15)],                                            # 0
    [(0.3, 0.25), (0.7, 0.25), (0.3, 0.8), (0.72, 0.8)],                   # Z / 2
    [(0.6, 0.85), (0.6, 0.15), (0.25, 0.6), (0.75, 0.6)],                  # 4
    [(0.7, 0.2), (0.35, 0.2), (0.33, 0.5), (0.65, 0.52), (0.62, 0.82), (0.3, 0.8)],  # 5
]

# Record when the mouse goes up (window sees the canvas's composed events) and, with a
# MutationObserver, the first moment the caption shows the update number we wait for.
INSTALL = """() => {
  window.__up = null; window.__seen = null; window.__pred = null; window.__target = Infinity;
  window.addEventListener('mouseup', () => { window.__up = performance.now(); }, true);
  const check = () => {
    const pred = document.querySelector('.draw-prediction');
    if (window.__pred === null && pred && +pred.dataset.update >= window.__target) window.__pred = performance.now();
    if (window.__seen !== null) return;
    const done = document.querySelector('.draw-done');  // the page's last element, hidden
    if (done && +done.dataset.update >= window.__target) {
      window.__seen = performance.now(); window.__text = done.outerHTML; }
  };
  new MutationObserver(check).observe(document.body,
                                      {subtree: true, childList: true, characterData: true, attributes: true});
}"""


# Before the app loads: note when the browser sends its first message after mouse-up (the canvas's
# drawing, after its 200 ms delay and PNG encoding) and when the last message of the answer arrives.
WS_HOOKS = """(() => {
  const Native = window.WebSocket;
  window.WebSocket = function (...args) {
    const ws = new Native(...args);
    ws.addEventListener('message', () => {
      if (window.__sent == null) return;
      window.__recv = performance.now();
      if (window.__first == null) window.__first = window.__recv;
    });
    const send = ws.send.bind(ws);
    ws.send = (data) => { if (window.__up != null && window.__sent == null) window.__sent = performance.now();
                          return send(data); };
    return ws;
  };
  Object.assign(window.WebSocket, Native);
  window.WebSocket.prototype = Native.prototype;
})();"""


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def current_update(page) -> int:
    done = page.locator(".draw-done")
    return int(done.get_attribute("data-update")) if done.count() else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strokes", type=int, default=36)
    ap.add_argument("--warmup", type=int, default=2, help="first strokes not counted (cold caches)")
    ap.add_argument("--clear-every", type=int, default=3)
    ap.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE", help="extra environment for the server")
    ap.add_argument("--url", help="measure a server that is already running instead of starting one")
    ap.add_argument("--method", default="Saliency", help="the attribution method the page computes per stroke, "
                                                          "by its label, e.g. 'Integrated Gradients'")
    args = ap.parse_args()

    server = None if args.url else start_app(dict(a.split("=", 1) for a in args.env))
    url = args.url or server.url
    rows, misses = [], 0  # (prediction shown, page complete, drawing sent, server run), ms after mouse-up
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.add_init_script(WS_HOOKS)
            page.goto(url)  # through the frame, as a user arrives
            wait_for_app(page)
            page.get_by_role("link", name="Draw").first.click()
            page.wait_for_selector("canvas.upper-canvas")
            wait_for_app(page)
            if args.method != "Saliency":  # the method's menu appears with the first prediction
                stroke(page, SHAPES[0])
                page.get_by_role("combobox", name="Method").click()
                page.get_by_role("option", name=args.method).click()
                wait_for_app(page)
            page.evaluate(INSTALL)
            for i in range(args.warmup + args.strokes):
                if i and i % args.clear_every == 0:
                    old = page.locator("canvas.upper-canvas").element_handle()
                    page.get_by_role("button", name="Clear").click()
                    page.wait_for_function("el => !el.isConnected", arg=old)  # the new, empty canvas
                    page.get_by_text("Draw a digit on the black canvas").wait_for()
                    wait_for_app(page)
                box = canvas_box(page)
                page.evaluate("n => { window.__target = n; for (const k of ['__seen', '__up', '__sent', '__recv',"
                              " '__first', '__pred']) window[k] = null; }", current_update(page) + 1)
                stroke(page, SHAPES[i % len(SHAPES)], box)
                try:
                    page.wait_for_function("() => window.__seen !== null", polling="raf", timeout=5000)
                except Exception:
                    misses += 1
                    print(f"stroke {i + 1}: no update within 5 s", flush=True)
                    wait_for_app(page)
                    continue
                pred, seen, sent, text = page.evaluate(
                    "() => [window.__pred - window.__up, window.__seen - window.__up, window.__sent - window.__up,"
                    " window.__text]")
                srv = int(DONE.search(text).group(2))
                warm = i < args.warmup
                if not warm:
                    rows.append((pred, seen, sent, srv))
                print(f"stroke {i + 1:2d}: prediction {pred:5.0f} ms, page complete {seen:5.0f} ms, "
                      f"drawing sent {sent:4.0f} ms, server {srv:3d} ms" + ("  (warm-up)" if warm else ""),
                      flush=True)
                wait_for_app(page)
                time.sleep(0.05)
            browser.close()
    finally:
        if server is not None:
            server.stop()

    if not rows:
        sys.exit("no stroke got an answer")
    pred, seen, sent, srv = zip(*rows)
    results = {
        "latency median": statistics.median(pred), "latency p95": percentile(pred, 95),
        "page complete median": statistics.median(seen), "page complete p95": percentile(seen, 95),
        "server median": statistics.median(srv), "server p95": percentile(srv, 95),
        "drawing sent median": statistics.median(sent),
    }
    print(f"\n{len(rows)} strokes ({misses} without an answer), after {args.warmup} warm-up; "
          "latency = mouse-up to the new prediction on the page")
    for name, value in results.items():
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"  (goal < {goal} ms: {'ok' if value < goal else 'MISSED'})"
        print(f"{name:22s} {value:6.0f} ms{verdict}")


if __name__ == "__main__":
    main()
