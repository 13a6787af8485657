"""Training speed with the Train page open in a browser and its charts streaming,
against the same run from the CLI. The goal: at least 93% of the CLI's samples/s.

In one process, alternating: (a) the CLI's path (a run folder trained in this
process, as `lenet train` trains it, recording included); (b) `streamlit run
app.py` with Chromium on the Train page, the same settings, Start pressed (the
server's worker process trains it), waiting until the run ends. Both numbers
are the mean of the epochs' samples/s (time in the training loop, evaluation
excluded), the page's read from its run folder. The last line is `ratio <page/cli>`.

On the 2-core build machine the browser, the server and the two training
threads share the cores. `--threads 1` trains both paths on one thread, leaving
the browser a core of its own, as a laptop with more cores than training threads would.

    python benchmarks/train_page_overhead.py [--rounds 2] [--epochs 1] [--preset classic]
                                             [--threads N] [--server-env NAME=VALUE ...]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from browser import VIEWPORT, launch_chromium, start_app, wait_for_app  # noqa: E402
import torch  # noqa: E402
from lenet_core.data import load_dataset  # noqa: E402
from lenet_core.model import preset  # noqa: E402
from lenet_core.runs import Run  # noqa: E402
from lenet_core.worker import train_run  # noqa: E402
from lenet_core.train import TrainConfig, device_label, resolve_device  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(names: set[str]) -> float:
    """CPU time used so far by every process whose command name is in `names` (Linux /proc)."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1:stat.rindex(")")] in names:
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def cli_run(config: TrainConfig, data_dir) -> float:
    """The run as `lenet train` trains it: in this process, into a run folder, recording its probes,
    health and TensorBoard scalars as every run does."""
    run = Run.create(config, Path(tempfile.mkdtemp(prefix="lenet-cli-")))
    train_run(run.path, data_dir=data_dir)
    return statistics.mean(m.samples_per_s for m in run.epochs())


def set_up_page(page, url: str, config: TrainConfig) -> None:
    page.goto(url)
    wait_for_app(page)
    page.get_by_role("link", name="Train").first.click()
    page.get_by_role("button", name="Start training").wait_for()
    wait_for_app(page)
    if config.model != preset("classic"):
        page.get_by_role("button", name="modern", exact=True).click()
        wait_for_app(page)
    epochs = page.get_by_role("spinbutton", name="Epochs")
    epochs.fill(str(config.epochs))
    epochs.press("Enter")
    wait_for_app(page)
    page.wait_for_timeout(500)


# Counted in the page, not by polling it from here: a poll is a round trip through
# Playwright's driver, and that CPU time would be charged to the page.
COUNT_UPDATES = """() => {
    window.__lenetUpdates = 0;
    let last = null;
    window.__lenetUpdates_timer = setInterval(() => {
        const x = document.querySelector('[data-chart="loss-per-step"]')?._fullData?.[0]?.x;
        const n = x && x.length ? x[x.length - 1] : 0;  // the last point's step (the length stops growing)
        if (n !== last) { window.__lenetUpdates += 1; last = n; }
    }, 250);
}"""


def page_run(page, runs_dir: Path, timeout_s: float) -> tuple[float, int, float]:
    """Press Start, wait for the run to end; (the run's mean samples/s, loss chart updates seen per
    second, the browser's CPU use meanwhile in cores)."""
    before = {p.name for p in runs_dir.iterdir()} if runs_dir.is_dir() else set()
    browser_cpu, t0 = cpu_seconds({"chromium", "chrome"}), time.monotonic()
    page.get_by_role("button", name="Start training").click()
    page.get_by_role("heading", name=re.compile(r"· training$")).wait_for(timeout=60_000)
    page.evaluate(COUNT_UPDATES)
    counting = time.monotonic()
    (new,) = [p for p in runs_dir.iterdir() if p.name not in before and not p.name.startswith(".")]
    # Wait on the run folder, not on the page: Playwright finds a heading by role by walking the
    # page's accessibility tree every half second, browser work that a user's page does not do.
    deadline = time.monotonic() + timeout_s
    while Run(new).info().live:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page's run did not finish in {timeout_s:.0f} s")
        time.sleep(0.5)
    updates = page.evaluate("() => { clearInterval(window.__lenetUpdates_timer); return window.__lenetUpdates; }")
    updates /= time.monotonic() - counting
    cores = (cpu_seconds({"chromium", "chrome"}) - browser_cpu) / (time.monotonic() - t0)
    page.get_by_role("heading", name=re.compile(r"· finished$")).wait_for(timeout=30_000)  # the page saw it end
    epochs = Run(new).epochs()
    return statistics.mean(m.samples_per_s for m in epochs), updates, cores


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="alternating runs of each path")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--preset", default="classic", choices=("classic", "modern"))
    p.add_argument("--data-dir", default=os.environ.get("LENET_DATA_DIR") or str(ROOT.parent / "shared" / "data"))
    p.add_argument("--timeout", type=float, default=600, help="seconds one page run may take")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                   help="an environment variable for the app server only, e.g. OMP_WAIT_POLICY=PASSIVE")
    p.add_argument("--threads", type=int, default=None,
                   help="training threads for both paths (default: torch's, one per core). With fewer "
                        "threads than cores, the browser has a core of its own, as on most laptops")
    args = p.parse_args(argv)

    from playwright.sync_api import sync_playwright

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(model=preset(args.preset), epochs=args.epochs, device="auto")
    data = load_dataset("fashion-mnist", args.data_dir)
    print(f"device {device_label(resolve_device('auto'))}  preset {args.preset}  batch {config.batch_size}  "
          f"epochs {config.epochs}  train images {len(data.train_images)}")
    tmp = Path(tempfile.mkdtemp(prefix="lenet-page-bench-"))
    extra = dict(item.split("=", 1) for item in args.server_env)
    if args.threads:
        extra.setdefault("OMP_NUM_THREADS", str(args.threads))
    server = start_app({"LENET_DATA_DIR": str(Path(args.data_dir).resolve()), "LENET_CACHE_DIR": str(tmp / "cache"),
                        "LENET_RUNS_DIR": str(tmp / "runs"), **extra})
    cli, page_rates = [], []
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            set_up_page(page, server.url, config)
            for r in range(1, args.rounds + 1):
                # Alternate which goes first, so a load change on the machine hits both alike.
                order = ("cli", "page") if r % 2 else ("page", "cli")
                for which in order:
                    if which == "cli":
                        cli.append(cli_run(config, args.data_dir))
                    else:
                        rate, updates, cores = page_run(page, tmp / "runs", args.timeout)
                        page_rates.append(rate)
                        print(f"round {r}: page {rate:8.0f} samples/s ({updates:.1f} chart updates a second; "
                              f"the browser used {cores:.0%} of one core meanwhile)")
                print(f"round {r}: cli  {cli[-1]:8.0f} samples/s")
            browser.close()
    finally:
        server.stop()
    c, pg = statistics.median(cli), statistics.median(page_rates)
    print(f"cli median {c:.0f} samples/s, page median {pg:.0f} samples/s (goal: page >= 93% of cli)")
    print(f"ratio {pg / c:.2f}")


if __name__ == "__main__":
    main()
