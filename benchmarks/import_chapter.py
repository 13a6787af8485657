"""LeNets trained outside LeNet Lab, then imported: each one's own test accuracy beside LeNet Lab's.

Each network is the chapter's, held as d2l's LeNet holds it (an nn.Sequential in `self.net`),
trained with a plain PyTorch loop (SGD, batch 128, Xavier, [0, 1] inputs) and saved as the book's
File I/O section saves it: torch.save(model.state_dict(), "lenet.params"). `modern` is the
chapter's first exercise (ReLU, max pooling, lr 0.1); `classic` the chapter's sigmoid network,
at lr 0.9 (the book's first edition: at 0.1 it is still at chance after one epoch, and a network
at chance fits any activation equally badly). Only the data's uint8 tensors come from lenet_core.
Then `lenet import` runs as a user runs it (a subprocess, activation, pooling and input scaling
not given: tried), and this prints the source's test accuracy, LeNet Lab's after the import,
their difference in points, what the import picked, and its time (inside the command, and the
whole command with Python's start).

    LENET_DATA_DIR=../shared/data python benchmarks/import_chapter.py [--epochs 1] [--nets modern,classic]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lenet_core.data import load_dataset  # noqa: E402


NETS = {"modern": (nn.ReLU, nn.MaxPool2d, 0.1), "classic": (nn.Sigmoid, nn.AvgPool2d, 0.9)}


class LeNet(nn.Module):
    """The chapter's network as d2l's class holds it (keys net.0, net.3, net.7, net.9, net.11)."""

    def __init__(self, act=nn.Sigmoid, pool=nn.AvgPool2d):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2), act(), pool(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), act(), pool(kernel_size=2, stride=2),
            nn.Flatten(), nn.Linear(400, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, 10))
        for m in self.net:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, x):
        return self.net(x)


def train_and_import(name: str, data, epochs: int, seed: int) -> dict:
    act, pool, lr = NETS[name]
    x_train, y_train = data.train_images.unsqueeze(1).float() / 255, data.train_labels
    x_test, y_test = data.test_images.unsqueeze(1).float() / 255, data.test_labels
    torch.manual_seed(seed)
    model = LeNet(act, pool)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y_train)).split(128):
            opt.zero_grad()
            F.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        own = sum(int((model(x_test[i:i + 2048]).argmax(1) == y_test[i:i + 2048]).sum())
                  for i in range(0, len(y_test), 2048)) / len(y_test)
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "lenet.params"
        torch.save(model.state_dict(), params)
        env = {**os.environ, "LENET_RUNS_DIR": str(Path(tmp) / "runs"), "PYTHONPATH": str(ROOT)}
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "lenet_core", "import", str(params), "--dataset", "fashion-mnist",
                              "--json"], env=env, capture_output=True, text=True, check=True).stdout
        wall_s = time.perf_counter() - t0
    print(out.rstrip(), "\n", flush=True)
    return {"name": name, "lr": lr, "train_s": train_s, "own": own, "wall_s": wall_s,
            **json.loads(out.strip().splitlines()[-1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nets", default="modern,classic", help="comma-separated: modern, classic")
    args = p.parse_args()

    data = load_dataset("fashion-mnist")
    rows = [train_and_import(name, data, args.epochs, args.seed) for name in args.nets.split(",")]
    print(f"{args.epochs} epoch(s) outside LeNet Lab, then `lenet import` with nothing given "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs)")
    print(f"{'network':<24} {'own test acc':>12} {'LeNet Lab':>10} {'diff (pts)':>10}  {'import picked':<34} "
          f"{'import s':>8} {'with start':>10} {'train s':>8}")
    for r in rows:
        picked = f"{r['activation']} + {r['pooling']}, {r['input']}"
        print(f"{r['name'] + ' (lr ' + str(r['lr']) + ')':<24} {r['own']:>12.4f} {r['test_accuracy']:>10.4f} "
              f"{100 * (r['test_accuracy'] - r['own']):>+10.2f}  {picked:<34} {r['seconds']:>8.2f} "
              f"{r['wall_s']:>10.2f} {r['train_s']:>8.1f}")


if __name__ == "__main__":
    main()
