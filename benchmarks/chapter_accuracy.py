"""Fashion-MNIST test accuracy with the chapter's settings (batch 128, SGD lr 0.1,
10 epochs, Xavier): the chapter's own code path beside lenet_core's engine.

The chapter path is the book's code as written: lazy layers initialised from a
first batch, torchvision FashionMNIST with Resize+ToTensor, DataLoader (4 workers).
The engine trains `classic` and `modern` with the same settings. Printed: each
test accuracy (and the epochs each engine run trained), the medians over the seeds,
and the gap `classic - chapter` between the medians in points.

    python benchmarks/chapter_accuracy.py [--epochs 10] [--seeds 0,1,2,3,4] [--presets classic] [--skip-chapter]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from lenet_core.data import load_dataset  # noqa: E402
from lenet_core.model import preset  # noqa: E402
from lenet_core.train import Trainer, TrainConfig, build_model, evaluate, resolve_device  # noqa: E402
from train_throughput import chapter_epoch, torchvision_root  # noqa: E402


def chapter_lenet() -> nn.Sequential:
    """The chapter's LeNet, lazy layers and all."""
    return nn.Sequential(
        nn.LazyConv2d(6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.LazyConv2d(16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(), nn.LazyLinear(120), nn.Sigmoid(), nn.LazyLinear(84), nn.Sigmoid(), nn.LazyLinear(10))


def chapter_run(root: Path, epochs: int, seed: int, device) -> float:
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    tf = transforms.Compose([transforms.Resize((28, 28)), transforms.ToTensor()])
    train = datasets.FashionMNIST(str(root), train=True, download=False, transform=tf)
    val = datasets.FashionMNIST(str(root), train=False, download=False, transform=tf)
    train_loader = torch.utils.data.DataLoader(train, batch_size=128, shuffle=True, num_workers=4)
    val_loader = torch.utils.data.DataLoader(val, batch_size=128, shuffle=False, num_workers=4)
    model = chapter_lenet().to(device)
    model(next(iter(train_loader))[0].to(device))  # d2l's apply_init: materialise the lazy layers...
    for m in model:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)  # ...then init_cnn
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(epochs):
        chapter_epoch(model, train_loader, opt, device)
    model.eval()
    correct = n = 0
    with torch.no_grad():
        for x, y in val_loader:
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
            n += len(y)
    return correct / n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2,3,4 (default 0)")
    p.add_argument("--presets", default="classic,modern", help="the engine's presets to train (default both)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--skip-chapter", action="store_true", help="only the engine's runs")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    seeds = [int(s) for s in args.seeds.split(",")]
    presets = args.presets.split(",")
    data = load_dataset("fashion-mnist", args.data_dir)
    print(f"device {device}, {args.epochs} epochs, batch 128, SGD lr 0.1, seeds {seeds}")

    columns = ([] if args.skip_chapter else ["chapter"]) + presets
    results = {c: [] for c in columns}
    root = None if args.skip_chapter else torchvision_root(args.data_dir)
    print(f"{'seed':>4}  " + "  ".join(f"{c:>16}" for c in columns), flush=True)
    for seed in seeds:
        row = []
        if root is not None:
            results["chapter"].append(chapter_run(root, args.epochs, seed, device))
            row.append(f"{results['chapter'][-1]:16.4f}")
        for name in presets:
            config = TrainConfig(model=preset(name), epochs=args.epochs, seed=seed, device=args.device)
            model = build_model(config)
            fit = Trainer(config).fit(model, data)
            results[name].append(evaluate(model, data.test_images, data.test_labels)["accuracy"])
            # The engine never cuts the chapter's plateau short: each run says how many epochs it trained.
            row.append(f"{results[name][-1]:.4f} ({len(fit.epochs)} ep)".rjust(16))
        print(f"{seed:>4}  " + "  ".join(row), flush=True)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
    medians = {c: statistics.median(v) for c, v in results.items()}
    print(f"{'med':>4}  " + "  ".join(f"{medians[c]:16.4f}" for c in columns))
    if "chapter" in medians and "classic" in medians:
        print(f"gap classic - chapter (medians) {100 * (medians['classic'] - medians['chapter']):+.2f} points")


if __name__ == "__main__":
    main()
