"""Which pixels made it say 7: attribution maps over the input image, computed with Captum.

    a = attribute(model, image, target=7, method="integrated_gradients")
    a.map  # (28, 28) float32; a.signed is True for this method

Every map answers for one class's score: its logit, the model's output before softmax.
Sign convention, for the signed maps: positive = evidence FOR the target class (more of
that pixel raises the score, or taking it away lowers it), negative = evidence against.
Unsigned maps (saliency, Grad-CAM) are >= 0 and say only how much, not which way.

Captum works by putting hooks on the modules it is given (Grad-CAM on the conv layer,
guided backpropagation on every ReLU) and by asking for gradients. A model served to
several sessions may be running inference in another thread meanwhile, and a hooked ReLU
breaks inference there (under no_grad or inference mode, the hook's register_hook on a
tensor that needs no gradient raises RuntimeError). So Captum never sees the caller's
model: each call works on a private copy of `model.net` that shares its parameters (no
weights are copied) and is put in eval mode itself. The caller's modules, mode and
requires_grad flags are never touched, no lock is needed, and gradients are taken with
respect to the input only, so parameters with requires_grad False are fine.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop, IntegratedGradients, LayerGradCam, Occlusion, Saliency
from torch import nn

# name -> (label, one-sentence explanation), in the order a UI should list them.
METHODS: dict[str, tuple[str, str]] = {
    "saliency": (
        "Saliency",
        "How strongly the class score reacts to a tiny change in each pixel (the size of the gradient): "
        "it shows where the model is sensitive, not whether a pixel argues for or against the class."),
    "integrated_gradients": (
        "Integrated Gradients",
        "Gradients averaged along a fade-in from a black image to this one, times each pixel's ink, so the "
        "map adds up to how far the score rose from the black image: positive pixels push toward the class, "
        "negative ones away."),
    "occlusion": (
        "Occlusion",
        "How much the class score drops when a small patch around each pixel is blacked out: no gradients, "
        "just the model's answers to edited images, so blank background can never matter."),
    "gradcam": (
        "Grad-CAM",
        "The last conv layer's feature maps, each weighted by how much the class score depends on it, kept "
        "where positive and spread from that layer's coarse grid (10x10 in LeNet-5) over the pixels each "
        "cell looks at: where the model looked, not which pixels."),
    "guided_backprop": (
        "Guided Backpropagation",
        "The gradient with every ReLU passing back only positive signals, which gives a sharp picture of the "
        "strokes that excite the class (defined only for ReLU networks)."),
    "guided_gradcam": (
        "Guided Grad-CAM",
        "Guided Backpropagation multiplied by Grad-CAM: the sharp strokes, but only inside the region "
        "Grad-CAM points to (defined only for ReLU networks)."),
}

# Methods that change the gradient of nn.ReLU modules only: on a sigmoid or tanh network
# they would silently be plain gradients (or Grad-CAM), so they are not offered there.
GUIDED = ("guided_backprop", "guided_gradcam")

SIGNED = {"saliency": False, "integrated_gradients": True, "occlusion": True, "gradcam": False,
          "guided_backprop": True, "guided_gradcam": True}

# The options each method takes, with their defaults. With 32 integration steps (in one
# batch: one forward and backward pass of 32 images) Integrated Gradients' sum was within
# 0.7% of the score change on 20 MNIST test digits, for briefly trained sigmoid and relu
# LeNet-5s. A 4x4 patch is about a stroke's width; with stride 2 the 28x28 image takes
# 13x13 = 169 patches, evaluated as one batch.
OPTIONS: dict[str, dict[str, int]] = {
    "integrated_gradients": {"n_steps": 32},
    "occlusion": {"window": 4, "stride": 2},
}


@dataclass
class Attribution:
    """One attribution map: `map` is (H, W) float32 on the CPU, in input pixels."""

    map: np.ndarray
    signed: bool
    method: str
    target: int
    seconds: float


def methods_for(model: nn.Module) -> list[str]:
    """The method names that mean something for this model, in display order."""
    relu = model.config.activation == "relu"
    return [name for name in METHODS if relu or name not in GUIDED]


def attribute(model: nn.Module, image, target: int, method: str, **options) -> Attribution:
    """Attribution of class `target`'s score to each input pixel of `image`.

    `image` is (H, W) (numpy or torch) or a (1, 1, H, W) tensor, floats in [0, 1] with ink = 1.
    `options` are a method's settings (see OPTIONS), e.g. n_steps=64 for integrated_gradients.
    Raises ValueError for an unknown method or option, a guided method on a non-ReLU model,
    a target that is not a class, or an image of the wrong shape."""
    start = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"unknown attribution method '{method}'; choose one of {', '.join(METHODS)}")
    if method not in methods_for(model):
        raise ValueError(
            f"'{method}' changes only the gradients of ReLU layers, so it means nothing for this model's "
            f"'{model.config.activation}' activation; it is offered for relu models only")
    unknown = set(options) - set(OPTIONS.get(method, {}))
    if unknown:
        allowed = ", ".join(OPTIONS.get(method, {})) or "none"
        raise ValueError(f"'{method}' has no option {', '.join(sorted(unknown))} (its options: {allowed})")
    settings = {**OPTIONS.get(method, {}), **options}
    classes = model.config.num_classes
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= target < classes:
        raise ValueError(f"target must be a class index from 0 to {classes - 1}, got {target!r}")
    target = int(target)

    # Gradients are needed even when the caller runs under no_grad or inference mode
    # (both are per thread, so this affects no other thread).
    with torch.inference_mode(False), torch.enable_grad():
        net = _private_net(model)
        x = _as_batch(image, model.config, next(model.parameters()).device)
        attr = _COMPUTE[method](net, x, target, model.config, **settings)
        heat = attr.detach().reshape(attr.shape[-2:]).to("cpu", torch.float32).numpy()
    return Attribution(map=heat, signed=SIGNED[method], method=method, target=target,
                       seconds=time.perf_counter() - start)


def _private_net(model: nn.Module) -> nn.Sequential:
    """A copy of model.net whose modules Captum may hook, sharing the model's parameters and
    buffers (the memo maps them to themselves). Hooks already on the model's own modules
    would come along; this project puts none there. About 0.7 ms for LeNet-5."""
    shared = {id(t): t for t in (*model.net.parameters(), *model.net.buffers())}
    return copy.deepcopy(model.net, shared).eval()


def _as_batch(image, config, device: torch.device) -> torch.Tensor:
    size = config.image_size
    x = torch.as_tensor(image)
    if x.dim() == 2:
        x = x[None, None]
    if tuple(x.shape) != (1, 1, size, size):
        raise ValueError(f"image must be ({size}, {size}) or (1, 1, {size}, {size}), got {tuple(x.shape)}")
    # A copy of our own (clone): Captum switches requires_grad on, and the caller's tensor
    # may be a leaf we must not change, or an inference-mode tensor that cannot have it.
    x = x.to(device=device, dtype=torch.float32).clone()
    return x.requires_grad_()


def _saliency(net, x, target, config):
    return Saliency(net).attribute(x, target=target, abs=True)


def _integrated_gradients(net, x, target, config, n_steps):
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 2:
        raise ValueError(f"n_steps must be an integer of at least 2, got {n_steps!r}")
    # All steps in one batch: one forward and one backward pass instead of n_steps of each.
    return IntegratedGradients(net).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=int(n_steps), internal_batch_size=int(n_steps))


def _occlusion(net, x, target, config, window, stride):
    size = config.image_size
    if not (isinstance(window, (int, np.integer)) and 1 <= window <= size):
        raise ValueError(f"window must be an integer from 1 to {size}, got {window!r}")
    if not (isinstance(stride, (int, np.integer)) and 1 <= stride <= window):
        raise ValueError(f"stride must be an integer from 1 to the window ({window}), got {stride!r}")
    # Captum slides the window from the top-left corner, ceil((size - window) / stride) + 1
    # places per side; all of them go through the network as one batch.
    per_side = -(-(size - window) // stride) + 1
    return Occlusion(net).attribute(
        x, sliding_window_shapes=(1, int(window), int(window)), strides=(1, int(stride), int(stride)),
        baselines=0.0, target=target, perturbations_per_eval=per_side * per_side)


def _last_conv(config) -> str:
    return f"conv{len(config.conv_channels)}"


def _gradcam(net, x, target, config):
    layer = _last_conv(config)
    coarse = LayerGradCam(net, getattr(net, layer)).attribute(x, target=target, relu_attributions=True)
    return _place_on_input(coarse, net, layer, x.shape[-1])


def _place_on_input(coarse: torch.Tensor, net: nn.Sequential, layer: str, size: int) -> torch.Tensor:
    """Resample a layer's (N, 1, h, w) map onto the input's pixels, each cell at the centre of its
    receptive field, bilinearly, fading to 0 beyond the outermost cells.

    Stretching the map over the image (F.interpolate, Captum's LayerAttribution.interpolate)
    would put LeNet-5's conv2 cell i at pixel 2.8 i + 1.4, but it looks at the pixels around
    2 i + 5: off by up to 3.6 pixels, outwards. On 50 MNIST test digits with briefly trained
    models, the share of the Grad-CAM map that falls on ink was 0.13 (sigmoid) and 0.20 (relu)
    stretched, about what blind placement gives (ink covers 0.15 of an image), and 0.30 and
    0.50 placed here."""
    scale, offset = _cell_centres(net, layer)
    # Cell coordinate of each pixel's centre, in grid_sample's [-1, 1] (align_corners False).
    cells = (torch.arange(size, dtype=coarse.dtype, device=coarse.device) + 0.5 - offset) / scale
    rows = (2 * cells + 1) / coarse.shape[-2] - 1
    cols = (2 * cells + 1) / coarse.shape[-1] - 1
    grid = torch.stack(torch.meshgrid(cols, rows, indexing="xy"), dim=-1).expand(coarse.shape[0], -1, -1, -1)
    return F.grid_sample(coarse, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _cell_centres(net: nn.Sequential, layer: str) -> tuple[float, float]:
    """(scale, offset) such that cell i of `layer`'s output is centred on input coordinate
    scale * i + offset (pixel p spans p to p + 1), from the kernels, strides and paddings of the
    layers up to it. Square kernels assumed, as LeNet builds them."""
    scale, offset = 1.0, 0.5
    for name, module in net.named_children():
        if isinstance(module, (nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d)):
            kernel, stride, padding = (_first(getattr(module, a)) for a in ("kernel_size", "stride", "padding"))
            dilation = _first(getattr(module, "dilation", 1))
            # Output cell i covers input cells stride*i - padding ... + dilation*(kernel-1).
            offset += scale * (dilation * (kernel - 1) / 2 - padding)
            scale *= stride
        if name == layer:
            return scale, offset
    raise ValueError(f"the model has no layer '{layer}'")


def _first(value) -> int:
    return value[0] if isinstance(value, tuple) else value


def _guided_backprop(net, x, target, config):
    return GuidedBackprop(net).attribute(x, target=target)


def _guided_gradcam(net, x, target, config):
    # Captum's GuidedGradCam multiplies the same two maps but stretches Grad-CAM with
    # F.interpolate; this keeps the placement of `gradcam`.
    return _guided_backprop(net, x, target, config) * _gradcam(net, x, target, config)


_COMPUTE = {"saliency": _saliency, "integrated_gradients": _integrated_gradients, "occlusion": _occlusion,
            "gradcam": _gradcam, "guided_backprop": _guided_backprop, "guided_gradcam": _guided_gradcam}
