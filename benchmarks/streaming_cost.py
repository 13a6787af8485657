"""What streaming the live panel costs the browser, with no training running.

Serves a small Streamlit script (from this project's folder, so its
.streamlit/config.toml applies) whose only content is a fragment that reruns as
often as the Train page's live panel does (twice a second; `--every` to change
it), and measures Chromium's CPU use over a window of steady streaming. Five
kinds of page, alternating:

- idle: the same page without the fragment (nothing changes);
- progress: the fragment draws a progress bar with a line of text only;
- rebuilt: the same live panel with its charts drawn by st.plotly_chart (the
  live charts' fallback), which the browser rebuilds from scratch at every redraw;
- live: the live panel redrawn by the fragment with its charts updated in place
  by the browser (lenet_app.live_chart): the Train page's panel where it cannot
  write its feed;
- feed: the Train page's panel while a run trains: no fragment and no reruns;
  the browser reads the run's feed file (lenet_app.live_feed) as often and
  updates the progress bar and the charts in place.

The charts are fed with made-up curves that grow the way a 10-epoch `classic`
run does (90 steps a second). Training is what pays for the browser's CPU time
on a small machine (train_page_overhead.py), so "progress" is the floor any
Streamlit page that updates as often pays here, and the others minus
"progress" is what their charts add. Prints Chromium's CPU use in cores for
each kind of page; the last line is `ratio feed/live`.

    python benchmarks/streaming_cost.py [--rounds 2] [--seconds 10] [--every S] [--start-step 0] [--max-points N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from browser import VIEWPORT, launch_chromium, start_app, wait_for_app  # noqa: E402
from train_page_overhead import cpu_seconds  # noqa: E402
from lenet_app import train_view as tv  # noqa: E402

PAGE = '''
import math, os, sys, time, types
sys.path.insert(0, {root!r})
import streamlit as st
from lenet_app import train_view as tv
from lenet_app import live_chart
from lenet_core.train import EpochMetrics, Snapshot, TrainConfig

KIND = os.environ["LENET_STREAM_KIND"]
START = int(os.environ["LENET_STREAM_START"])
EVERY = float(os.environ["LENET_STREAM_EVERY"])
if os.environ.get("LENET_STREAM_MAX_POINTS"):
    tv.MAX_POINTS = int(os.environ["LENET_STREAM_MAX_POINTS"])
STEPS_PER_EPOCH, EPOCHS, STEPS_PER_S = 469, 10, 90
if KIND == "rebuilt":  # the live charts' own fallback: st.plotly_chart
    live_chart.available = lambda: False
st.title("Streaming cost: " + KIND)
tv.still_progress_bars()
if "t0" not in st.session_state:
    st.session_state.t0 = time.time()


def curves(n):
    steps = [(i + 1, 0.4 + 1.9 * math.exp(-i / 300) + 0.1 * math.sin(i)) for i in range(n)]
    epochs = [EpochMetrics(e, 0.5 + 1 / e, 0.8, 0.55 + 1 / e, 0.85 - 0.2 / e, 12000.0, 5.0)
              for e in range(1, n // STEPS_PER_EPOCH + 1)]
    return steps, epochs


def step_now(t0):
    return (START + int((time.time() - t0) * STEPS_PER_S)) % (STEPS_PER_EPOCH * EPOCHS) + 1


class MadeUpJob:
    """What the live feed reads from a training job, with the made-up curves."""
    name, alive = "made-up", True

    def __init__(self):
        self.t0 = time.time()

    def join(self, timeout=None):
        time.sleep(timeout or 0)
        return False

    def snapshot(self):
        n = step_now(self.t0)
        steps, epochs = curves(n)
        return Snapshot("running", "", TrainConfig(epochs=EPOCHS), "CPU", n, STEPS_PER_EPOCH * EPOCHS,
                        len(epochs) + 1, steps, epochs, 12000.0, 30.0, time.time() - self.t0)


@st.cache_resource
def made_up_run():
    return types.SimpleNamespace(job=MadeUpJob())


@st.fragment(run_every=EVERY if KIND not in ("idle", "feed") else None)
def panel():
    n = step_now(st.session_state.t0)
    st.progress(n / (STEPS_PER_EPOCH * EPOCHS), text=f"step {{n:,}} of {{STEPS_PER_EPOCH * EPOCHS:,}}")
    if KIND in ("rebuilt", "live"):
        steps, epochs = curves(n)
        tv.show_curves(steps, epochs, STEPS_PER_EPOCH * EPOCHS, EPOCHS)


if KIND == "feed":
    tv.REFRESH_SECONDS = EVERY
    assert tv.show_live_panel(made_up_run()), "the live feed could not be written"
else:
    panel()
'''


def measure(kind: str, script: Path, seconds: float, env: dict[str, str]) -> float:
    """Chromium's CPU use, in cores, over `seconds` of steady streaming of one kind of page."""
    from playwright.sync_api import sync_playwright

    server = start_app({"LENET_STREAM_KIND": kind, **env}, script=script)
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.goto(server.url)
            wait_for_app(page)
            page.get_by_text("Streaming cost").wait_for()
            page.wait_for_timeout(3000)  # past the first render and Plotly's loading
            c0, t0 = cpu_seconds({"chromium", "chrome"}), time.monotonic()
            time.sleep(seconds)
            cores = (cpu_seconds({"chromium", "chrome"}) - c0) / (time.monotonic() - t0)
            browser.close()
    finally:
        server.stop()
    return cores


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0, help="length of each measuring window")
    p.add_argument("--every", type=float, default=None,
                   help="seconds between redraws (default: the Train page's)")
    p.add_argument("--start-step", type=int, default=0,
                   help="step of the made-up run the curves start at (4,690 steps in all), e.g. 3000 for late in a run")
    p.add_argument("--max-points", type=int, default=None,
                   help="points per curve of the step chart (default: the Train page's own limit)")
    args = p.parse_args(argv)
    every = args.every or tv.REFRESH_SECONDS
    env = {"LENET_STREAM_START": str(args.start_step), "LENET_STREAM_EVERY": str(every)}
    if args.max_points:
        env["LENET_STREAM_MAX_POINTS"] = str(args.max_points)

    with tempfile.TemporaryDirectory(prefix="lenet-stream-") as tmp:
        script = Path(tmp) / "stream_page.py"
        script.write_text(PAGE.format(root=str(ROOT)))
        kinds = ("idle", "progress", "rebuilt", "live", "feed")
        results: dict[str, list[float]] = {k: [] for k in kinds}
        for r in range(1, args.rounds + 1):
            for kind in kinds if r % 2 else kinds[::-1]:
                results[kind].append(measure(kind, script, args.seconds, env))
                print(f"round {r}: {kind:8s} Chromium {results[kind][-1]:.2f} cores")
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"median Chromium CPU while streaming, a redraw every {every:g} s: idle {med['idle']:.2f}, "
          f"progress bar only {med['progress']:.2f}, charts rebuilt at each redraw {med['rebuilt']:.2f}, "
          f"charts updated in place {med['live']:.2f}, the Train page's panel read from its feed "
          f"{med['feed']:.2f} cores")
    print(f"charts add {med['rebuilt'] - med['progress']:.2f} cores rebuilt, {med['live'] - med['progress']:.2f} "
          f"updated in place")
    print(f"ratio feed/live {med['feed'] / med['live']:.2f}")


if __name__ == "__main__":
    main()
