"""Exercise 1 ("Train classic and modern") on this machine's local pool: the time from asking for
the pair to the moment both runs have their first epoch, i.e. both curves are on the overlay.

Two ways side by side, each with a pool of its own (warmed up before the clock starts):
- `queued`: the pair submitted one after the other, as the app did before (on a CPU the pool
  trains one run at a time, so modern waits for all of classic's epochs);
- `together`: the pair submitted with `submit_together`, as the app does now (one job, the
  cores split between the two runs).

    LENET_DATA_DIR=../shared/data python benchmarks/exercise1_overlay.py [--epochs 2]

`--epochs` is the runs' planned epochs (the exercise's are 10): `queued` waits for all of them,
so keep it small here; its time grows by one classic epoch per epoch planned. Prints one line
per way, then `first_epoch_both_s queued=X together=Y`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lenet_core.executors import LocalPool  # noqa: E402
from lenet_core.model import preset  # noqa: E402
from lenet_core.runs import Run  # noqa: E402
from lenet_core.train import TrainConfig  # noqa: E402


def measure(way: str, epochs: int, data_dir: str | None) -> tuple[float, float, float, list[float]]:
    """Seconds until classic, modern, and both, have one epoch recorded; the runs' samples/s (the
    machine is shared: a slow figure says how busy it was)."""
    root = Path(tempfile.mkdtemp(prefix=f"ex1-{way}-"))
    pool = LocalPool(data_dir=data_dir, devices=["cpu"])
    try:
        deadline = time.monotonic() + 120
        while len(pool.ready) < len(pool.procs):
            if time.monotonic() > deadline:
                raise SystemExit("the pool's workers did not start within 120 s")
            time.sleep(0.2)
        pair = [Run.create(TrainConfig(model=preset(name), epochs=epochs, device="cpu"), root)
                for name in ("classic", "modern")]
        t0 = time.monotonic()
        if way == "together":
            pool.submit_together(pair)
        else:
            for run in pair:
                pool.submit(run)
        first: list[float | None] = [None, None]
        while None in first:
            for i, run in enumerate(pair):
                if first[i] is None and run.status().get("epochs_done", 0) >= 1:
                    first[i] = time.monotonic() - t0
            if any(r.info().status in ("failed", "diverged", "interrupted") for r in pair):
                raise SystemExit(f"a run ended early: {[(r.info().status, r.info().message) for r in pair]}")
            time.sleep(0.5)
        speeds = [run.status().get("samples_per_s") or 0.0 for run in pair]
        for run in pair:
            run.request(stop=True)
        return first[0], first[1], max(first), speeds
    finally:
        pool.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="the runs' planned epochs (the exercise's: 10)")
    args = parser.parse_args()
    data_dir = os.environ.get("LENET_DATA_DIR")
    print(f"cores {len(os.sched_getaffinity(0))}, epochs planned {args.epochs}, data {data_dir or '(default)'}")
    both = {}
    for way in ("queued", "together"):
        classic, modern, both[way], speeds = measure(way, args.epochs, data_dir)
        print(f"{way:9s} classic first epoch {classic:6.1f} s, modern {modern:6.1f} s, both {both[way]:6.1f} s "
              f"(samples/s {speeds[0]:,.0f} and {speeds[1]:,.0f}; load average {os.getloadavg()[0]:.1f})", flush=True)
    print(f"first_epoch_both_s queued={both['queued']:.1f} together={both['together']:.1f}")


if __name__ == "__main__":
    main()
