"""Per-layer health while a run trains: saturated units, dead units, gradient sizes.

Why does the chapter's sigmoid network at lr 0.1 learn slowly? Backpropagation multiplies
the gradient by the activation's derivative at every layer. The sigmoid's derivative is at
most 1/4 (at z = 0) and nearly 0 in its flat tails; tanh's is at most 1, ReLU's is 0 or 1.
These functions put numbers on that. What they showed for `classic` on Fashion-MNIST
(benchmarks/saturation_demo.py): no unit saturated at all over the first two epochs, but every
sigmoid layer near its 1/4 slope, so image-to-image differences shrink about 4x per layer on the
way forward (the last hidden layer's outputs differ by ~0.0005 between images: the network
answers almost the same for every image, loss stuck at ln 10) and conv1's weight gradient is
0.2-2% of the output layer's on the way back; `modern` (ReLU) has 17-55% after its first steps.

Definitions (stated once, used by the app's explanations):

* A *unit* is one neuron of a dense layer, or one (channel, y, x) position of a conv layer's
  map; a *pair* is one unit for one input image.
* A pair of a sigmoid or tanh layer is *saturated* when the activation's derivative at its
  pre-activation z is under FLAT (10%) of the derivative's maximum. For both that is
  cosh(z')^2 > 1/FLAT, with z' = z/2 for the sigmoid (sigmoid'(z) = 1/(4 cosh^2(z/2))) and
  z' = z for tanh (tanh'(z) = 1/cosh^2(z)): |z| > 3.637 for the sigmoid (outputs under 0.026
  or over 0.974) and |z| > 1.818 for tanh (|output| > 0.949).
* A unit of a ReLU layer is *dead* (for these inputs) when its output is 0 for every image,
  i.e. z <= 0 for all of them: no gradient reaches its weights through any of them.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from .model import LeNet
from .train import as_input

FLAT = 0.1
# |z| beyond which the derivative is under FLAT of its maximum (see the module docstring).
SATURATION_Z = {"sigmoid": 2 * math.acosh(1 / math.sqrt(FLAT)), "tanh": math.acosh(1 / math.sqrt(FLAT))}
HEALTH_KEYS = ("saturated", "dead", "mean", "spread", "slope")


@contextlib.contextmanager
def one_thread():
    """Run the torch work inside with one intra-op thread in the calling thread, then put its
    count back.

    For a pass over a handful of images (the 20 probes) a second thread gains nothing, and on a
    busy machine every parallel region waits for the other core: measured on the 2-core build
    machine while other work ran, layer_health took 16-24 ms median with 2 threads and 1.4 ms
    with 1, ProbeRecorder.record 3-20 ms and 0.8 ms. torch.set_num_threads sets this thread's
    count (and the default for threads started meanwhile, a window of a millisecond)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def layer_health(model: LeNet, images: torch.Tensor) -> dict[str, dict]:
    """For every activation layer (conv1_act, ..., fc1_act, ...), on `images` (float
    (N, 1, 28, 28) in [0, 1], or uint8 (N, 28, 28)):

    * "activation": "sigmoid", "tanh" or "relu"
    * "saturated": share of (unit, image) pairs in a flat tail (sigmoid, tanh; None for ReLU)
    * "dead": share of units that are 0 for every image (ReLU; None otherwise)
    * "mean": mean activation over all pairs
    * "spread": how much the output differs from image to image: each unit's standard
      deviation over the images (population, correction=0), averaged over units. Near 0 the
      layers after it see almost the same input whatever the image
    * "slope": mean derivative of the activation over all pairs (the factor the layer
      multiplies gradients by, on average: at most 0.25 for the sigmoid, 1 for tanh and ReLU)

    The model's train/eval mode is left as it is (LeNet has no layer that behaves differently
    in the two), and nothing is recorded for autograd."""
    kind = model.config.activation
    weight = model.net.conv1.weight
    x = as_input(images) if images.dtype == torch.uint8 else images
    names, values = [], []
    with torch.inference_mode(), one_thread():
        h = x.to(device=weight.device, dtype=weight.dtype)
        for name, layer in model.net.named_children():
            z, h = h, layer(h)
            if not name.endswith("_act"):
                continue
            if kind == "relu":
                alive = (z > 0).flatten(1)                       # (images, units)
                tail = torch.full((), float("nan"), device=z.device)
                dead = 1 - alive.any(dim=0).float().mean()
                slope = alive.float().mean()
            else:
                tail = (z.abs() > SATURATION_Z[kind]).float().mean()
                dead = torch.full((), float("nan"), device=z.device)
                slope = (h * (1 - h)).mean() if kind == "sigmoid" else (1 - h * h).mean()
            names.append(name)
            spread = h.flatten(1).float().std(dim=0, correction=0).mean()
            values.append(torch.stack([tail, dead, h.float().mean(), spread, slope.float()]))
        # One transfer for all layers: on a GPU each .item() would wait for the device.
        rows = torch.stack(values).tolist() if values else []
    return {name: {"activation": kind,
                   **{k: (None if math.isnan(v) else v) for k, v in zip(HEALTH_KEYS, row)}}
            for name, row in zip(names, rows)}


def gradient_norms(model: LeNet) -> dict[str, float]:
    """The L2 norm of the weight gradient of every conv and linear layer (conv1, ..., fc1, ...,
    output), read right after backward. Layers without a gradient are left out."""
    names, grads = [], []
    for name, layer in model.net.named_children():
        if isinstance(layer, (nn.Conv2d, nn.Linear)) and layer.weight.grad is not None:
            names.append(name)
            grads.append(layer.weight.grad)
    if not grads:
        return {}
    with torch.no_grad():
        # Norms computed where the gradients are, then fetched together: one host sync.
        norms = torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]).tolist()
    return dict(zip(names, norms))
