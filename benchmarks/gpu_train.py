"""The chapter's run on a GPU: `classic`, batch 128, SGD lr 0.1, 10 epochs on Fashion-MNIST, the
engine's way (whole data set on the device, a loss read back every 25 steps), eager and under
torch.compile (LENET_COMPILE: "default", and "reduce-overhead", which captures CUDA graphs).

For each mode: the training time (the epochs' training loops, evaluation excluded), the whole
fit's wall time, test accuracy, and samples/s; the recording a run does in the app (probes,
layer health, TensorBoard) on and off. One JSON object per line, then a summary line
`gpu_train_s <eager seconds> accuracy <eager accuracy>`. Goal: under 2 s of training (moonshot
1 s), accuracy as on the CPU (73.78% for seed 0).

    python benchmarks/gpu_train.py [--epochs 10] [--modes off,default,reduce-overhead] [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import torch  # noqa: E402

from lenet_core.model import preset  # noqa: E402
from lenet_core.runs import Run  # noqa: E402
from lenet_core.train import TrainConfig, Trainer, build_model, device_label  # noqa: E402
from lenet_core.worker import dataset, train_run  # noqa: E402


def plain_fit(config, data) -> dict:
    t0 = time.perf_counter()
    result = Trainer(config).fit(build_model(config), data)
    if config.device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    train = sum(m.epoch_time for m in result.epochs)
    return {"train_s": round(train, 3), "wall_s": round(wall, 3), "accuracy": result.final.get("accuracy"),
            "samples_per_s": round(sum(m.samples_per_s for m in result.epochs) / len(result.epochs))}


def recorded_fit(config, data_dir) -> dict:
    """The same run as the app trains it: in a run folder, recording probes, health and TensorBoard."""
    run = Run.create(config, Path(tempfile.mkdtemp(prefix="lenet-gpu-")))
    t0 = time.perf_counter()
    train_run(run.path, data_dir=data_dir)
    wall = time.perf_counter() - t0
    epochs = run.epochs()
    return {"train_s": round(sum(m.epoch_time for m in epochs), 3), "wall_s": round(wall, 3),
            "accuracy": run.info().test_accuracy, "samples_per_s": round(sum(m.samples_per_s for m in epochs) / len(epochs))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--modes", default="off,default,reduce-overhead")
    p.add_argument("--device", default="cuda")
    p.add_argument("--data-dir", default=os.environ.get("LENET_DATA_DIR") or str(ROOT.parent / "shared" / "data"))
    args = p.parse_args(argv)
    config = TrainConfig(model=preset("classic"), epochs=args.epochs, device=args.device)
    data = dataset("fashion-mnist", args.data_dir)
    print(f"device {device_label(args.device)}  torch {torch.__version__}  epochs {args.epochs}", flush=True)
    eager = None
    for mode in args.modes.split(","):
        os.environ["LENET_COMPILE"] = mode
        plain_fit(config.replace(epochs=1), data)  # warm up: kernels, compilation, allocator
        row = {"mode": mode, **plain_fit(config, data)}
        print(json.dumps(row), flush=True)
        if mode == "off":
            eager = row
    os.environ["LENET_COMPILE"] = "off"
    print(json.dumps({"mode": "off, recorded as the app does", **recorded_fit(config, args.data_dir)}), flush=True)
    if eager:
        print(f"gpu_train_s {eager['train_s']} accuracy {eager['accuracy']}")


if __name__ == "__main__":
    main()
