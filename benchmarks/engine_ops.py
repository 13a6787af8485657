"""Where a training step of lenet_core's engine spends its time, operator by operator.

Runs the engine's CPU step (in the memory layout Trainer uses) on Fashion-MNIST
batches and times every ATen operator it calls, in place, with a wall clock
around each call (a TorchDispatchMode). Unlike torch.profiler's self time,
this is the time the step waits for each operator, threads included. The
timing adds some overhead between operators, so the step is slower here than
in train_throughput.py; the shares are what to read.

    python benchmarks/engine_ops.py [--steps 100] [--preset classic] [--batch-size 128] [--top 15]
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lenet_core.data import load_dataset  # noqa: E402
from lenet_core.model import preset  # noqa: E402
from lenet_core.fastpath import for_training  # noqa: E402
from lenet_core.train import TrainConfig, as_input, build_model, make_optimizer  # noqa: E402


class OpTimer(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seconds = collections.defaultdict(float)
        self.calls = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        t0 = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        key = (func.__name__, tuple(first.shape) if first is not None else ())
        self.seconds[key] += time.perf_counter() - t0
        self.calls[key] += 1
        return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--preset", default="classic")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)

    config = TrainConfig(model=preset(args.preset), batch_size=args.batch_size, device="cpu")
    data = load_dataset("fashion-mnist", args.data_dir)
    model = build_model(config).train()
    net, fmt = for_training(model, torch.device("cpu"))  # what the trainer steps through, in its layout
    optimizer = make_optimizer(config, model.parameters())
    order = torch.randperm(len(data.train_images), generator=torch.Generator().manual_seed(0))
    b = args.batch_size

    def step(i: int):
        idx = order[(i * b) % (len(order) - b):][:b]
        x = as_input(data.train_images.index_select(0, idx)).contiguous(memory_format=fmt)
        loss = F.cross_entropy(net(x), data.train_labels.index_select(0, idx))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(args.warmup):
        step(i)
    plain = []
    for i in range(args.steps):
        t0 = time.perf_counter()
        step(i)
        plain.append(time.perf_counter() - t0)
    timer, timed = OpTimer(), []
    for i in range(args.steps):
        t0 = time.perf_counter()
        with timer:
            step(i)
        timed.append(time.perf_counter() - t0)

    total = sum(timer.seconds.values()) / args.steps
    print(f"preset {args.preset}  batch {b}  threads {torch.get_num_threads()}  steps {args.steps}")
    print(f"step: {statistics.median(plain) * 1e3:.2f} ms untimed, {statistics.median(timed) * 1e3:.2f} ms with "
          f"the timer; operators {total * 1e3:.2f} ms per step")
    print(f"{'us/step':>8} {'share':>6} {'calls':>5}  operator, first input's shape")
    for key, sec in sorted(timer.seconds.items(), key=lambda kv: -kv[1])[:args.top]:
        per_step = sec / args.steps
        print(f"{per_step * 1e6:8.0f} {per_step / total:6.1%} {timer.calls[key] // args.steps:5d}  {key[0]} {key[1]}")


if __name__ == "__main__":
    main()
