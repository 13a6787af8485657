"""Why does the chapter's sigmoid LeNet at lr 0.1 learn slowly? The numbers, layer by layer.

Trains `classic` (sigmoid, average pooling) and `modern` (ReLU, max pooling) with the chapter's
settings (SGD lr 0.1, batch 128) on Fashion-MNIST for two epochs, with a plain loop rather than
the Trainer, because the weight gradients are read right after backward. Every `--every` steps
it takes lenet_core.diagnostics.gradient_norms and layer_health (on the 20 probe images of
lenet_core.probes.probe_set), and prints per preset:

* the running training loss,
* each layer's weight-gradient norm, and conv1's as a share of the output layer's,
* each activation layer's saturated share (sigmoid) or dead share (ReLU), its spread (how much
  its output differs from image to image) and its mean slope: the factor the layer multiplies
  gradients by on the way back.

    python benchmarks/saturation_demo.py [--data-dir ../shared/data] [--epochs 2] [--every 100]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lenet_core.data import load_dataset  # noqa: E402
from lenet_core.diagnostics import gradient_norms, layer_health  # noqa: E402
from lenet_core.model import LeNet, preset  # noqa: E402
from lenet_core.probes import probe_set  # noqa: E402
from lenet_core.train import as_input, evaluate  # noqa: E402


def train(name: str, data, epochs: int, every: int, seed: int, lr: float = 0.1, batch: int = 128):
    torch.manual_seed(seed)
    model = LeNet(preset(name))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    probes, _ = probe_set(data)
    n = len(data.train_labels)
    samples, losses, accuracies, step = [], [], [], 0
    for _ in range(epochs):
        for idx in torch.randperm(n).split(batch):
            step += 1
            loss = F.cross_entropy(model(as_input(data.train_images[idx])), data.train_labels[idx])
            opt.zero_grad()
            loss.backward()
            losses.append(loss.item())
            if step == 1 or step % every == 0:
                # Before opt.step(): the gradients of this step and the weights they were taken at.
                samples.append((step, sum(losses[-every:]) / len(losses[-every:]),
                                gradient_norms(model), layer_health(model, probes)))
            opt.step()
        accuracies.append(evaluate(model, data.test_images, data.test_labels)["accuracy"])
    return samples, accuracies


def row(label: str, values, fmt: str) -> str:
    return f"  {label:<12}" + "".join(f"{fmt.format(v) if v is not None else '-':>9}" for v in values)


def report(name: str, samples, accuracies) -> None:
    print(f"\n== {name}: test accuracy after each epoch "
          + ", ".join(f"{a:.1%}" for a in accuracies))
    print(row("step", [s for s, *_ in samples], "{}"))
    print(row("loss", [loss for _, loss, _, _ in samples], "{:.3f}"))
    print(" weight-gradient norm")
    for layer in samples[0][2]:
        print(row(layer, [g.get(layer) for _, _, g, _ in samples], "{:.2e}"))
    print(row("conv1/output", [g["conv1"] / g["output"] for _, _, g, _ in samples], "{:.3f}"))
    health = samples[0][3]
    kind = next(iter(health.values()))["activation"]
    measure = "dead" if kind == "relu" else "saturated"
    print(f" {measure} share ({kind})")
    for layer in health:
        print(row(layer, [h[layer][measure] for *_, h in samples], "{:.3f}"))
    print(" spread (std of each unit's output over the probe images, mean over units)")
    for layer in health:
        print(row(layer, [h[layer]["spread"] for *_, h in samples], "{:.4f}"))
    print(" mean slope (activation's derivative)")
    for layer in health:
        print(row(layer, [h[layer]["slope"] for *_, h in samples], "{:.3f}"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT / ".." / "shared" / "data"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--presets", nargs="+", default=["classic", "modern"])
    args = ap.parse_args()
    data = load_dataset("fashion-mnist", args.data_dir, download=False)
    for name in args.presets:
        t = time.perf_counter()
        samples, accuracies = train(name, data, args.epochs, args.every, args.seed)
        report(name, samples, accuracies)
        print(f"  ({time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
