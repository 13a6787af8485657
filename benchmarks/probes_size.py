"""Size of probes.pt after 10 and 200 epochs, and the cost of one record() and layer_health().

Records an untrained model's frames 201 times (epochs 0 to 200: the file's size depends only on
the shapes and the number of frames kept, not on the weights), saving after epoch 10 and after
epoch 200, for the chapter's LeNet-5 and for the widest settings the Train page allows (3 conv
layers of 256 channels, 11x11 kernels, padding "same"), with the 20 probe images. Then times
record() and layer_health() for `classic` (median of 50 calls).

    python benchmarks/probes_size.py [--data-dir ../shared/data] [--widest-channels 256]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lenet_core.data import load_dataset  # noqa: E402
from lenet_core.diagnostics import layer_health  # noqa: E402
from lenet_core.model import LeNet, ModelConfig  # noqa: E402
from lenet_core.probes import ProbeRecorder, probe_set  # noqa: E402


def sizes(config: ModelConfig, images, labels, folder: Path) -> None:
    rec = ProbeRecorder(config, images, labels)
    model = LeNet(config)
    print(f"{config.conv_channels} k={config.kernel_size} {config.padding}: channels kept "
          f"{ {k: f'{v}/{c}' for (k, v), c in zip(rec.kept.items(), config.conv_channels)} }, "
          f"frame {rec.frame_bytes / 1e6:.2f} MB, up to {rec.max_frames} frames")
    for e in range(201):
        rec.record(e, model)
        if e in (10, 200):
            path = rec.save(folder / "probes.pt")
            print(f"  after epoch {e:>3}: {path.stat().st_size / 1e6:6.1f} MB, {len(rec.epochs)} frames, "
                  f"stride {rec.stride}, last epochs {rec.epochs[-3:]}")


def median_ms(f, n: int = 50) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT / ".." / "shared" / "data"))
    ap.add_argument("--widest-channels", type=int, default=256)
    args = ap.parse_args()
    images, labels = probe_set(load_dataset("fashion-mnist", args.data_dir, download=False))
    w = args.widest_channels
    with tempfile.TemporaryDirectory() as folder:
        sizes(ModelConfig(), images, labels, Path(folder))
        sizes(ModelConfig(conv_channels=(w, w, w), kernel_size=11, padding="same"), images, labels, Path(folder))

    model = LeNet(ModelConfig())
    rec = ProbeRecorder(model.config, images, labels)
    print(f"classic on the CPU: record() {median_ms(lambda: rec.record(1, model)):.2f} ms, "
          f"layer_health() {median_ms(lambda: layer_health(model, images)):.2f} ms (medians of 50)")


if __name__ == "__main__":
    main()
