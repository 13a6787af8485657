"""What one Draw stroke costs the server, on the CPU and (where there is one) on the GPU: the
prediction with every layer's output, an attribution map (saliency, and integrated gradients),
and the five probe inputs. Medians over `--strokes` strokes of a drawn 7.

    python benchmarks/draw_inference.py [--strokes 50]

Last line: `draw_server_ms <cpu median, integrated gradients included>`; goal under 80 ms.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lenet_core.activations import activations  # noqa: E402
from lenet_core.attribution import attribute  # noqa: E402
from lenet_core.checkpoint import load_checkpoint  # noqa: E402
from lenet_core.preprocess import image_to_tensor  # noqa: E402


def seven() -> np.ndarray:
    img = np.zeros((28, 28), np.float32)
    img[6:9, 7:21] = 1
    for r in range(9, 24):
        c = 19 - (r - 9) * 8 // 15
        img[r, c:c + 3] = 1
    return img


def stroke(model, img, method) -> float:
    t0 = time.perf_counter()
    x = image_to_tensor(img)
    acts = activations(model, x)
    best = int(acts["output"].argmax())
    attribute(model, img, best, method)
    for variant in (np.zeros_like(img), 1 - img, np.roll(img, 6, axis=1), np.rot90(img).copy(), img * 0.5):
        activations(model, image_to_tensor(variant))
    if next(model.parameters()).is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strokes", type=int, default=50)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # as the Draw page runs its inference: one thread
    base = load_checkpoint(ROOT / "models" / "digits" / "checkpoint.pt").model.eval().requires_grad_(False)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cpu_ig = None
    for device in devices:
        model = base.to(device)
        for method in ("saliency", "integrated_gradients"):
            for _ in range(5):
                stroke(model, seven(), method)
            times = [stroke(model, seven(), method) for _ in range(args.strokes)]
            med, p95 = statistics.median(times), sorted(times)[int(0.95 * len(times)) - 1]
            print(f"{device}: {method:<21} median {med:6.1f} ms  p95 {p95:6.1f} ms per stroke", flush=True)
            if device == "cpu" and method == "integrated_gradients":
                cpu_ig = med
    if len(devices) == 1:
        print("no CUDA GPU here: the GPU rows are missing")
    print(f"draw_server_ms {cpu_ig:.1f}")


if __name__ == "__main__":
    main()
