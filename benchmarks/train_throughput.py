"""Training throughput: the chapter's data path vs lenet_core's engine, interleaved.

The chapter (d2l) path: torchvision FashionMNIST with Resize+ToTensor, a DataLoader
(batch 128, shuffle, num_workers=4), one optimizer step per batch. The engine path:
lenet_core's Trainer on the same model and settings, reading preloaded uint8 tensors.
Both run whole epochs, alternating, in this one process; the last line is
`ratio <engine/chapter>`.

    python benchmarks/train_throughput.py [--rounds 3] [--preset classic] [--device auto]
"""
from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lenet_core.data import SPLIT_FILES, find_local, load_dataset  # noqa: E402
from lenet_core.fastpath import keep_freed_memory  # noqa: E402
from lenet_core.model import preset  # noqa: E402
from lenet_core.train import Trainer, TrainConfig, build_model, resolve_device  # noqa: E402


def torchvision_root(data_dir) -> Path:
    """Lay the local IDX files out the way torchvision's FashionMNIST reads them."""
    src = find_local("fashion-mnist", data_dir)
    if src is None:
        load_dataset("fashion-mnist", data_dir)  # raises the clear "where to get it" error
    root = Path(tempfile.mkdtemp(prefix="lenet-bench-"))
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stems in SPLIT_FILES.values():
        for stem in stems:
            gz, plain = src / f"{stem}.gz", src / stem
            if plain.exists():
                shutil.copy(plain, raw / stem)
            else:
                (raw / stem).write_bytes(gzip.decompress(gz.read_bytes()))
    return root


def chapter_epoch(model, loader, optimizer, device) -> float:
    """One epoch exactly as d2l's Trainer.fit_epoch does it; returns samples/s."""
    model.train()
    n, t0 = 0, time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def peak_flops(device) -> float:
    """Achievable FLOP/s of a large float32 matmul on this device (the practical peak)."""
    a = torch.randn(2048, 2048, device=device)
    b = torch.randn(2048, 2048, device=device)
    a @ b
    best = 0.0
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 4 * 2 * 2048 ** 3 / (time.perf_counter() - t0))
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="alternating epochs of each path")
    p.add_argument("--preset", default="classic")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--workers", type=int, default=4)
    args = p.parse_args(argv)

    from torchvision import datasets, transforms

    # The engine's allocator settings are process-wide: set them before either side runs, so both
    # run under them all along (the chapter's LeNet-5, with its 2.4 MB maps, measured no different).
    keep_freed_memory()
    device = resolve_device(args.device)
    config = TrainConfig(model=preset(args.preset), epochs=1, device=args.device)
    root = torchvision_root(args.data_dir)
    tv = datasets.FashionMNIST(str(root), train=True, download=False,
                               transform=transforms.Compose([transforms.Resize((28, 28)), transforms.ToTensor()]))
    loader = torch.utils.data.DataLoader(tv, batch_size=config.batch_size, shuffle=True, num_workers=args.workers)
    data = load_dataset("fashion-mnist", args.data_dir)

    # The chapter's side is built from torch.nn's own modules only: no lenet_core fast path.
    chapter_model = build_model(config).to(device)  # model.py's network: torch.nn's modules only
    chapter_opt = torch.optim.SGD(chapter_model.parameters(), lr=config.lr)
    engine_model = build_model(config)
    print(f"device {device}  threads {torch.get_num_threads()}  preset {args.preset}  "
          f"batch {config.batch_size}  train images {len(tv)}")
    chapter, engine = [], []
    for r in range(1, args.rounds + 1):
        chapter.append(chapter_epoch(chapter_model, loader, chapter_opt, device))
        result = Trainer(config.replace(seed=r)).fit(engine_model, data)
        engine.append(result.epochs[0].samples_per_s)
        print(f"round {r}: chapter {chapter[-1]:8.0f} samples/s   engine {engine[-1]:8.0f} samples/s")
    shutil.rmtree(root, ignore_errors=True)

    c, e = statistics.median(chapter), statistics.median(engine)
    train_flops = 3 * 2 * config.model.counts()[1]  # multiply-adds x2, forward + backward (about 2x forward)
    peak = peak_flops(device)
    print(f"chapter median {c:.0f} samples/s, engine median {e:.0f} samples/s")
    print(f"engine compute {e * train_flops / 1e9:.2f} GFLOP/s of {peak / 1e9:.1f} GFLOP/s matmul peak "
          f"({100 * e * train_flops / peak:.1f}%), {train_flops / 1e6:.2f} MFLOP per training sample")
    print(f"ratio {e / c:.2f}")


if __name__ == "__main__":
    main()
