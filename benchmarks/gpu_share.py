"""Several runs sharing one device through the app's executor (the local pool, LENET_MAX_JOBS
runs at once per device): N `classic` runs queued at once, each `--epochs` epochs; per run its
samples/s (mean of its epochs) and the total of all runs, for each N.

    python benchmarks/gpu_share.py [--runs 1,4,10] [--epochs 2] [--device cuda]

Last line: `share_total_samples_per_s <total at the largest N> runs N`.
"""
from __future__ import annotations

import argparse
import os
import statistics
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="1,4,10")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--device", default="cuda")
    p.add_argument("--data-dir", default=os.environ.get("LENET_DATA_DIR") or str(ROOT.parent / "shared" / "data"))
    args = p.parse_args(argv)
    device = "cuda:0" if args.device == "cuda" else "cpu"
    last = None
    for n in [int(v) for v in args.runs.split(",")]:
        root = Path(tempfile.mkdtemp(prefix="lenet-share-"))
        pool = LocalPool(per_device=n, data_dir=args.data_dir, devices=[device])
        try:
            while len(pool.ready) < n:
                time.sleep(0.2)
            runs = [Run.create(TrainConfig(model=preset("classic"), epochs=args.epochs, seed=i, device="auto"), root)
                    for i in range(n)]
            t0 = time.perf_counter()
            for run in runs:
                pool.submit(run)
            while any(r.info().live for r in runs):
                time.sleep(0.2)
            wall = time.perf_counter() - t0
        finally:
            pool.shutdown()
        rates = [statistics.mean(m.samples_per_s for m in r.epochs()) for r in runs]
        total = sum(len(r.epochs()) for r in runs) * 60000 / wall
        print(f"{n:3d} runs at once: each {statistics.median(rates):,.0f} samples/s (min {min(rates):,.0f}, max "
              f"{max(rates):,.0f}); all together {total:,.0f} samples/s over {wall:.1f} s; statuses "
              f"{sorted({r.info().status for r in runs})}", flush=True)
        last = (total, n)
    print(f"share_total_samples_per_s {last[0]:.0f} runs {last[1]}")


if __name__ == "__main__":
    main()
