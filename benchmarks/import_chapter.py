"""A LeNet trained outside LeNet Lab, then imported: its own test accuracy beside LeNet Lab's.

The network is the chapter's, held as d2l's LeNet holds it (an nn.Sequential in `self.net`),
trained with a plain PyTorch loop (SGD lr 0.1, batch 128, Xavier, [0, 1] inputs) and saved as
the book's File I/O section saves it: torch.save(model.state_dict(), "lenet.params"). Only the
data's uint8 tensors come from lenet_core (no download here). Then `lenet import` runs as a user
runs it (a subprocess, activation and pooling not given: tried), and this prints the source's
test accuracy, LeNet Lab's after the import, their difference in points, what the import picked,
and its time (inside the command, and the whole command with Python's start).

    LENET_DATA_DIR=../shared/data python benchmarks/import_chapter.py [--epochs 1] [--seed 0]
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


class LeNet(nn.Module):
    """The chapter's network as d2l's class holds it (keys net.0, net.3, net.7, net.9, net.11)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(), nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10))
        for m in self.net:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, x):
        return self.net(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    data = load_dataset("fashion-mnist")
    x_train, y_train = data.train_images.unsqueeze(1).float() / 255, data.train_labels
    x_test, y_test = data.test_images.unsqueeze(1).float() / 255, data.test_labels
    torch.manual_seed(args.seed)
    model = LeNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
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
    result = json.loads(out.strip().splitlines()[-1])
    lab = result["test_accuracy"]
    print(out.rstrip())
    print()
    print(f"trained outside LeNet Lab: {args.epochs} epoch(s) of the chapter's LeNet in {train_s:.1f}s "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"its own test accuracy       {own:.4f}  ({len(y_test):,} Fashion-MNIST test images)")
    print(f"LeNet Lab's after import    {lab:.4f}  ({result['count']:,} images)")
    print(f"difference                  {100 * (lab - own):+.2f} points")
    print(f"picked                      {result['activation']} + {result['pooling']}, {result['input']} "
          f"(guessed: {', '.join(result['guessed']) or 'nothing'}; best of {len(result['check'])} on "
          f"{result['check'][0]['images']:,} images)")
    print(f"import time                 {result['seconds']:.2f}s in the command, {wall_s:.2f}s with Python's start")


if __name__ == "__main__":
    main()
