"""Faster CPU training for LeNet's shapes: the same network, the same results, other kernels.

Nothing here is needed to understand LeNet: `model.py` is the network, and the trainer switches
these on for training on the CPU (`for_training`). Each one is kept for a measured gain in what
users see, training speed (benchmarks/train_throughput.py, the engine against the chapter's own
data path: the goal is 3x; benchmarks/engine_ops.py shows where a step's time goes):

- channels-last tensors: oneDNN's convolutions run about 1.5x faster on NHWC than on NCHW;
- the allocator kept from returning freed memory (`keep_freed_memory`): 25-26 ms -> 10-13 ms a step
  with 32 filters in conv1;
- 2x2 average pooling as a depthwise conv, with a row-copy backward (`_AvgPool2x2`), and a flatten
  that keeps the channels-last layout for the gradient (`_FlattenKeepFormat`);
- the first conv block by space-to-depth (`conv_phases`): 1.03-1.10x for 6-12 filters;
- conv2's input gradient in NCHW after it (`_ConvNCHWInputGrad`): 1.026x for `classic`.

Every path is tested against `model.LeNet`'s own torch.nn layers (tests/test_fastpath.py)."""
from __future__ import annotations

import ctypes
import functools
import itertools
import os
import platform

import torch
import torch.nn.functional as F
from torch import nn

from .model import LeNet


# glibc's malloc hands big blocks (from 128 KB, adjusted as they are freed) to mmap and returns
# freed memory at the top of its heap to the system, so a training step whose tensors are a few
# MB each can fault in fresh zeroed pages for them at every step: with 32 filters in conv1 (12.8 MB
# maps at batch 128) a CPU step took 25-26 ms here, and 10-13 ms with the two limits below fixed
# (benchmarks/engine_ops.py). The chapter's LeNet-5 (2.4 MB maps) did not change. This is the main
# thread's heap, the one a worker process or the CLI trains in.
KEEP_HEAP_BELOW = 32 << 20    # blocks up to this come from the heap (glibc's largest allowed value)
KEEP_FREED_UP_TO = 512 << 20  # free heap memory kept for reuse before any is given back
_ALLOCATOR_TUNED: bool | None = None


def keep_freed_memory() -> bool:
    """Once per process, on glibc: serve tensors up to KEEP_HEAP_BELOW from the heap and keep up
    to KEEP_FREED_UP_TO of freed memory for reuse (mallopt). True if the settings are in place.
    The cost: the process keeps that much memory after a large run, instead of giving it back."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is None:
        _ALLOCATOR_TUNED = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL("libc.so.6")
                m_trim_threshold, m_mmap_threshold = -1, -3  # from malloc.h
                _ALLOCATOR_TUNED = bool(libc.mallopt(m_mmap_threshold, KEEP_HEAP_BELOW)
                                        and libc.mallopt(m_trim_threshold, KEEP_FREED_UP_TO))
            except (OSError, AttributeError):
                pass
    return _ALLOCATOR_TUNED


class _FlattenKeepFormat(torch.autograd.Function):
    """flatten(1) whose gradient comes back in the input's memory format."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.flatten(1)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


@functools.lru_cache(maxsize=32)
def _box_weight(channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Depthwise 2x2 weights of 1/4: the kernel of 2x2 average pooling as a convolution
    (cached: made once per channel count, and never as an inference-mode tensor)."""
    with torch.inference_mode(False):
        return torch.full((channels, 1, 2, 2), 0.25, dtype=dtype, device=device)


class _AvgPool2x2(torch.autograd.Function):
    """2x2, stride-2 average pooling of a channels-last tensor with even height and width,
    with the same values and gradients as avg_pool2d, computed by faster kernels.

    On the CPU, avg_pool2d and its backward vectorise over the channels, so with LeNet's
    few channels on large maps (6 on 28x28) they are several times slower than they need
    to be. The forward pass is a depthwise 2x2 convolution with weights 1/4 (oneDNN); the
    backward pass spreads each gradient over its 2x2 window with two copies whose inner
    runs are whole rows. benchmarks/engine_ops.py shows both in a training step."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        c = x.shape[1]
        return F.conv2d(x, _box_weight(c, x.dtype, x.device), stride=2, groups=c)

    @staticmethod
    def backward(ctx, grad):
        n, c, h, w = ctx.shape
        if c > 16:  # with many channels avg_pool2d's own backward is as fast or faster
            template = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device,
                                   memory_format=torch.channels_last)  # only its shape and layout are read
            return torch.ops.aten.avg_pool2d_backward(grad, template, [2, 2], [2, 2], [0, 0], False, True, None)
        g = grad.mul(0.25).permute(0, 2, 3, 1).reshape(-1, c)          # one row per output pixel
        rows = torch.cat([g, g], dim=1).view(n, h // 2, 1, w * c)        # each pixel twice along a row
        full = rows.expand(n, h // 2, 2, w * c).reshape(n, h, w, c)      # each row twice
        return full.permute(0, 3, 1, 2)


# --- The first conv block by space-to-depth -------------------------------------------------
#
# A conv with one input channel spends its time badly in oneDNN: on 28x28 maps with 6 filters
# of 5x5 it reaches about a quarter of the rate of LeNet's second conv. Followed by 2x2
# pooling, the same block can be computed at half resolution instead: split the padded image
# into its 2x2 phases (pixel_unshuffle: 1 channel at 32x32 -> 4 channels at 16x16), and let
# one conv with 4 inputs and 4*C outputs of (k//2+1)^2 produce all four output phases of every
# filter at once. Each output pixel of the 2x2 pooling window is then one channel of the same
# half-resolution pixel, so the activation runs on it as is and average pooling becomes the
# mean of four channels (a fixed 1x1 conv). Same function, same parameters; the phase kernel
# is spread from the layer's own weight every step, so autograd sums its gradient back.
#
# Only for average pooling: a max over the four phase channels (torch.max over a view, a chain of
# maximums, or max_pool2d on a reshaped view) measured 1.3-2.9 ms with its backward, against
# 0.74 ms for max_pool2d on the 28x28 maps.


@functools.lru_cache(maxsize=32)
def _phase_spread(k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """0/1 matrices that spread a filter's k*k weights over its phase kernel: (4, k*k, s*s*4), so
    that W (C, k*k) @ it is (p*2+q, C, a, b, r*2+t), the phase kernel in channels-last order."""
    s = k // 2 + 1
    with torch.inference_mode(False):
        spread = torch.zeros(2, 2, k, k, s, s, 2, 2, dtype=dtype)
        for p, q, r, t, a, b in itertools.product(range(2), range(2), range(2), range(2), range(s), range(s)):
            i, j = 2 * a + r - p, 2 * b + t - q
            if 0 <= i < k and 0 <= j < k:
                spread[p, q, i, j, a, b, r, t] = 1
        return spread.view(4, k * k, s * s * 4).to(device)


@functools.lru_cache(maxsize=32)
def _phase_mean_weight(channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """1x1 conv weights that average the four phase channels (p, q, c) of each channel c."""
    with torch.inference_mode(False):
        w = torch.zeros(channels, 4, channels, dtype=dtype, device=device)
        w[torch.arange(channels), :, torch.arange(channels)] = 0.25
        return w.view(channels, 4 * channels, 1, 1).contiguous(memory_format=torch.channels_last)


@functools.lru_cache(maxsize=32)
def _unshuffle_index(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Flat indices into an h x w map, ordered (a, b, r, t) for pixel (2a+r, 2b+t)."""
    with torch.inference_mode(False):  # saved for backward, so never an inference-mode tensor
        a, b, r, t = torch.meshgrid(torch.arange(h // 2), torch.arange(w // 2), torch.arange(2),
                                    torch.arange(2), indexing="ij")
        return ((2 * a + r) * w + 2 * b + t).flatten().to(device)


def conv_phases(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """conv(x) for a conv with one input channel, as its four 2x2 phases: channel (p*2+q)*C + c
    at (i, j) is output pixel (2i+p, 2j+q) of filter c (channels-last). Needs stride 1 and an
    even output size."""
    out_c, _, k, _ = conv.weight.shape
    s = k // 2 + 1
    pad = conv.padding[0]
    extra = 2 * s - 1 - k  # 0 for odd kernels, 1 for even: the phases need 2*(out/2 + s - 1) input rows
    # The phase kernel is a fixed linear spread of the weights: one small matmul, whose backward
    # (the same matrices transposed) sums each weight's gradient from its up to 16 places.
    kernel = (torch.matmul(conv.weight.reshape(out_c, k * k), _phase_spread(k, conv.weight.dtype, conv.weight.device))
              .view(4 * out_c, s, s, 4).permute(0, 3, 1, 2))
    # pixel_unshuffle of the padded image, as one gather straight into channels-last (about half
    # the time of pixel_unshuffle and a layout conversion): channel r*2+t at (a, b) is padded pixel
    # (2a+r, 2b+t).
    xp = F.pad(x, (pad, pad + extra, pad, pad + extra))
    n, _, h, w = xp.shape
    phases = (xp.reshape(n, h * w).index_select(1, _unshuffle_index(h, w, x.device))
              .view(n, h // 2, w // 2, 4).permute(0, 3, 1, 2))
    bias = conv.bias.expand(4, out_c).reshape(-1) if conv.bias is not None else None
    return F.conv2d(phases, kernel, bias)


def _plain_conv(conv: nn.Module) -> bool:
    """An nn.Conv2d with stride 1, no dilation, no groups and zero padding mode: the kind both
    training fast paths below know how to compute."""
    return (isinstance(conv, nn.Conv2d) and conv.groups == 1 and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.padding_mode == "zeros")


def _nchw_input_grad_fits(conv: nn.Module) -> bool:
    """Whether the conv after the phase block computes its input's gradient in NCHW
    (_ConvNCHWInputGrad): for kernels of 5 and up, without padding, with up to 16 filters.

    oneDNN's channels-last input gradient is slow for few input channels: for the chapter's conv2
    (6 -> 16, 5x5 on 14x14, batch 128) about 720 us against 510 us in NCHW, layout conversion of
    the incoming gradient included. Interleaved A/B of whole training steps here (30 rounds of
    30 steps): 1.026 for `classic`, 1.038 with 4 filters in conv1, 1.017 with 12 in conv2, 1.10
    with 7x7 kernels; but 0.97 with 3x3 kernels and 0.93 with padding "same", and no gain with
    32 filters, so those keep the channels-last gradient."""
    return (_plain_conv(conv) and conv.out_channels <= 16 and conv.kernel_size[0] >= 5
            and conv.padding in ((0, 0), 0))


def _phase_block_fits(conv: nn.Module, pool: nn.Module, x: torch.Tensor) -> bool:
    """Whether conv -> activation -> pool can run as conv_phases (see above)."""
    if not (_plain_conv(conv) and isinstance(pool, nn.AvgPool2d) and _is_2x2(pool)
            and x.dim() == 4 and x.device.type == "cpu" and conv.in_channels == 1
            and isinstance(conv.padding, tuple) and conv.padding[0] == conv.padding[1]
            and conv.kernel_size[0] == conv.kernel_size[1]):
        return False
    out = [n + 2 * conv.padding[0] - conv.kernel_size[0] + 1 for n in x.shape[2:]]
    # Measured here (interleaved A/B of whole training steps, 2-core AVX-512 machine, with
    # train.keep_freed_memory in place): 1.03-1.07x for 6 filters, 1.02-1.10x for 8 and 12, but
    # 0.87x for 16 and 0.95x for 24 and 32, where the direct conv vectorises well and the phase
    # kernel's extra multiply-adds (36 taps for 25) cost more than they save. So up to 12.
    return conv.out_channels <= 12 and all(n >= 2 and n % 2 == 0 for n in out)


class _ConvNCHWInputGrad(torch.autograd.Function):
    """F.conv2d of a channels-last input, whose backward computes the input's gradient in NCHW.
    Values as F.conv2d; the input gradient differs from the channels-last one in the last bits."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        conv_backward = torch.ops.aten.convolution_backward
        pad = list(ctx.padding)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            _, grad_w, grad_b = conv_backward(grad, x, weight, [weight.shape[0]] if ctx.has_bias else None,
                                              [1, 1], pad, [1, 1], False, [0, 0], 1,
                                              [False, ctx.needs_input_grad[1], ctx.needs_input_grad[2]])
        if ctx.needs_input_grad[0]:
            shape_only = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # NCHW: its layout picks oneDNN's
            grad_x = conv_backward(grad.contiguous(), shape_only, weight.contiguous(), None, [1, 1], pad, [1, 1],
                                   False, [0, 0], 1, [True, False, False])[0]
            grad_x = grad_x.contiguous(memory_format=torch.channels_last)
        return grad_x, grad_w, grad_b, None

def _is_2x2(pool: nn.AvgPool2d) -> bool:
    return (pool.kernel_size in (2, (2, 2)) and pool.stride in (2, (2, 2)) and pool.padding in (0, (0, 0))
            and not pool.ceil_mode and pool.divisor_override is None)


def _avg_pool_fits(pool: nn.Module, x: torch.Tensor) -> bool:
    """A channels-last training input of a large enough, even map: _AvgPool2x2's case."""
    return (isinstance(pool, nn.AvgPool2d) and _is_2x2(pool) and x.dim() == 4 and x.requires_grad
            and x.shape[1] > 1 and x.shape[2] >= 16 and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0
            and x.is_contiguous(memory_format=torch.channels_last))


def _flatten_fits(layer: nn.Module, x: torch.Tensor) -> bool:
    return (isinstance(layer, nn.Flatten) and x.dim() == 4 and x.requires_grad
            and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())


class FastLeNet(nn.Module):
    """`model` in training, by the fast paths above where they apply. It shares the model's
    parameters (nothing is copied), so the optimizer and the checkpoint see the same weights."""

    def __init__(self, model: LeNet):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net, layers, h = self.model.net, list(self.model.net), x
        if torch.is_grad_enabled() and _phase_block_fits(net.conv1, net.conv1_pool, x):
            # The first block by space-to-depth, then conv2 (if there is one) with its NCHW input gradient.
            h = net.conv1_act(conv_phases(x, net.conv1))
            h = F.conv2d(h, _phase_mean_weight(net.conv1.out_channels, h.dtype, h.device))
            layers = layers[3:]
            if _nchw_input_grad_fits(layers[0]):
                h = _ConvNCHWInputGrad.apply(h, layers[0].weight, layers[0].bias, layers[0].padding)
                layers = layers[1:]
        for layer in layers:
            h = fast_layer(layer, h)
        return h


def fast_layer(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """layer(x), by a fast path where one applies."""
    if _avg_pool_fits(layer, x):
        return _AvgPool2x2.apply(x)
    if _flatten_fits(layer, x):
        return _FlattenKeepFormat.apply(x)
    return layer(x)


def for_training(model: LeNet, device: torch.device) -> tuple[nn.Module, torch.memory_format]:
    """The module to call in training steps and the memory layout to give it its input in: on the
    CPU a FastLeNet of `model` (moved to channels-last) and channels-last; on a GPU the model, or
    torch.compile of it where LENET_COMPILE asks ("default" or "reduce-overhead", which captures
    CUDA graphs): benchmarks/gpu_train.py measures each, and eager stays the default until a GPU
    measurement shows a gain."""
    if device.type != "cpu":
        mode = os.environ.get("LENET_COMPILE", "off")
        if device.type == "cuda" and mode in ("default", "reduce-overhead", "max-autotune"):
            return torch.compile(model, mode=mode), torch.contiguous_format
        return model, torch.contiguous_format
    keep_freed_memory()
    model.to(memory_format=torch.channels_last)
    return FastLeNet(model), torch.channels_last
