"""What a run's recording costs (probes at every epoch, layer health every 50 steps, TensorBoard
scalars: lenet_core/recording.py): the same `classic` run trained in a run folder, as the app's
workers train it, with the recording on and off, alternating, in one process.

    python benchmarks/recording_cost.py [--rounds 3] [--epochs 1]

Last line: `ratio <on/off>` of the median samples/s (time in the training loop, evaluation
excluded, as the epochs report it). Goal: at least 0.95.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lenet_core.model import preset  # noqa: E402
from lenet_core.runs import Run  # noqa: E402
from lenet_core.train import TrainConfig  # noqa: E402
from lenet_core.worker import dataset, train_run  # noqa: E402


def one(config, record: bool, data_dir) -> float:
    run = Run.create(config, Path(tempfile.mkdtemp(prefix="lenet-rec-")))
    train_run(run.path, data_dir=data_dir, record=record)
    return statistics.mean(m.samples_per_s for m in run.epochs())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--data-dir", default=os.environ.get("LENET_DATA_DIR") or str(ROOT.parent / "shared" / "data"))
    args = p.parse_args(argv)
    config = TrainConfig(model=preset("classic"), epochs=args.epochs, device="cpu")
    dataset("fashion-mnist", args.data_dir)
    one(config.replace(epochs=1), True, args.data_dir)  # warm up
    on, off = [], []
    for r in range(1, args.rounds + 1):
        for record in ((True, False) if r % 2 else (False, True)):  # alternate which goes first
            (on if record else off).append(one(config, record, args.data_dir))
        print(f"round {r}: recording on {on[-1]:8.0f} samples/s   off {off[-1]:8.0f} samples/s", flush=True)
    print(f"median on {statistics.median(on):.0f}, off {statistics.median(off):.0f} samples/s (goal: on >= 95% of off)")
    print(f"ratio {statistics.median(on) / statistics.median(off):.2f}")


if __name__ == "__main__":
    main()
