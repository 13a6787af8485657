"""What a part-time competitor for the CPU, like a browser redrawing charts, costs training.

The Train page's training shares the build machine's two cores with Chromium,
which redraws the live panel while it trains (benchmarks/streaming_cost.py).
This benchmark stands a plain busy loop in for the browser, so the effect can be
measured without one: a separate process that burns `duty` of one core in one
burst every `period` seconds. In one process, alternating, it trains one epoch of
lenet_core's engine with and without the competitor, on 2 threads and on 1.

Why it matters: each of torch's parallel ops splits its work evenly between its
threads and waits for the last one. While the competitor runs, one training thread
shares a core with it and every op waits for that thread, so training runs at
about half speed for the whole burst, and the epoch keeps about 1 / (1 + duty) of
its speed, although the competitor takes only duty / 2 of the machine. A single
training thread is not slowed, but is slower to begin with. The last line is
`ratio <2 threads with the competitor / 2 threads alone>`.

    python benchmarks/cpu_contention.py [--duty 0.35] [--period 0.5] [--rounds 2]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lenet_core.data import load_dataset  # noqa: E402
from lenet_core.model import preset  # noqa: E402
from lenet_core.train import Trainer, TrainConfig, build_model  # noqa: E402

BURNER = """
import sys, time
busy, period = float(sys.argv[1]), float(sys.argv[2])
while True:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < busy:
        pass
    time.sleep(max(period - busy, 0.0))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duty", type=float, default=0.35,
                   help="share of one core the competitor burns (Chromium used 0.33-0.49 during page runs)")
    p.add_argument("--period", type=float, default=0.5, help="seconds between bursts (the live panel's interval)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--preset", default="classic")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    if not 0 < args.duty < 1:
        p.error("--duty must be between 0 and 1")

    config = TrainConfig(model=preset(args.preset), epochs=1, device="cpu")
    data = load_dataset("fashion-mnist", args.data_dir)
    model = build_model(config)
    arms = [(2, False), (2, True), (1, False), (1, True)]
    rates: dict[tuple[int, bool], list[float]] = {arm: [] for arm in arms}
    print(f"competitor: {args.duty:.0%} of one core in one burst every {args.period:g} s; preset {args.preset}")
    for r in range(1, args.rounds + 1):
        for threads, compete in arms if r % 2 else arms[::-1]:
            burner = subprocess.Popen([sys.executable, "-c", BURNER, str(args.duty * args.period), str(args.period)]) \
                if compete else None
            try:
                torch.set_num_threads(threads)
                result = Trainer(config.replace(seed=r)).fit(model, data)
            finally:
                if burner is not None:
                    burner.kill()
                    burner.wait()
            rates[threads, compete].append(result.epochs[0].samples_per_s)
            print(f"round {r}: {threads} thread{'s' if threads > 1 else ' '} "
                  f"{'with   ' if compete else 'without'} competitor {rates[threads, compete][-1]:8.0f} samples/s")
    med = {arm: statistics.median(v) for arm, v in rates.items()}
    for threads in (2, 1):
        print(f"{threads} thread{'s' if threads > 1 else ''}: alone {med[threads, False]:.0f}, "
              f"with the competitor {med[threads, True]:.0f} samples/s "
              f"({med[threads, True] / med[threads, False]:.2f})")
    print(f"the even-split model predicts {1 / (1 + args.duty):.2f} for 2 threads")
    print(f"ratio {med[2, True] / med[2, False]:.2f}")


if __name__ == "__main__":
    main()
