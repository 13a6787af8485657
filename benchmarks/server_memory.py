"""The server's memory over a lecture's worth of use: RSS of the Streamlit process (its workers
apart) after the first run, then after 10 finished runs and 30 sessions opened and closed (each
a protocol client, benchmarks/st_client.py, opening the Train page and Draw with a drawing).

The runs are started from Chromium on the Train page (MNIST, 1 epoch each). Sessions closed are
kept by Streamlit for a reconnect (server.disconnectedSessionTTL, 120 s by default): the last
reading waits that out, as a room's closed tabs would.

    python benchmarks/server_memory.py [--runs 10] [--sessions 30] [--ttl-wait 125]

Last line: `server_rss_growth_mb X` (goal under 100).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]
from browser import VIEWPORT, launch_chromium, start_app, wait_for_app  # noqa: E402
from draw_page import DIGITS, DrawTab  # noqa: E402
from st_client import Session  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def sessions(url: str, n: int) -> None:
    for i in range(n):
        async with Session(url, name=f"s{i}") as s:
            await s.open_page("train")
        async with Session(url, name=f"d{i}") as s:
            tab = DrawTab(s)
            await tab.open()
            await tab.wait_answer(await tab.draw(DIGITS["7"][:1]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--sessions", type=int, default=30)
    p.add_argument("--ttl-wait", type=float, default=125)
    p.add_argument("--data-dir", default=os.environ.get("LENET_DATA_DIR") or str(ROOT.parent / "shared" / "data"))
    args = p.parse_args(argv)

    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="lenet-mem-"))
    server = start_app({"LENET_DATA_DIR": str(Path(args.data_dir).resolve()), "LENET_RUNS_DIR": str(tmp / "runs"),
                        "LENET_CACHE_DIR": str(tmp / "cache"), "LENET_MAX_RUNS": "100"})
    pid = server.proc.pid
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.goto(f"{server.url}/train")
            wait_for_app(page)
            page.get_by_role("combobox", name="Data set").click()
            page.get_by_role("option", name="MNIST digits").click()
            wait_for_app(page)
            page.get_by_role("button", name="modern", exact=True).click()
            wait_for_app(page)
            box = page.get_by_role("spinbutton", name="Epochs")
            box.fill("1")
            box.press("Enter")
            wait_for_app(page)
            readings = {}
            for i in range(1, args.runs + 1):
                page.get_by_role("button", name="Start training").click()
                page.get_by_role("heading", name=re.compile(r"· finished$")).wait_for(timeout=120_000)
                wait_for_app(page)
                if i == 1:
                    readings["after the first run"] = rss_mb(pid)
                    print(f"after the first run: {readings['after the first run']:.0f} MB", flush=True)
            readings[f"after {args.runs} runs"] = rss_mb(pid)
            print(f"after {args.runs} runs: {readings[f'after {args.runs} runs']:.0f} MB", flush=True)
            browser.close()
        asyncio.run(sessions(server.url, args.sessions))
        print(f"after {args.sessions} sessions opened and closed: {rss_mb(pid):.0f} MB", flush=True)
        time.sleep(args.ttl_wait)
        final = rss_mb(pid)
        print(f"{args.ttl_wait:.0f} s later (closed sessions let go): {final:.0f} MB", flush=True)
    finally:
        server.stop()
    growth = final - readings["after the first run"]
    print(f"growth {growth:+.0f} MB after {args.runs} runs and {args.sessions} sessions (goal: under 100 MB)")
    print(f"server_rss_growth_mb {growth:.0f}")


if __name__ == "__main__":
    main()
