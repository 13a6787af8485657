"""LeNet-5 and the chapter's variations on it, built from one settings object."""
from __future__ import annotations

import dataclasses
import functools
import itertools
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}
INITS = ("xavier", "kaiming", "default")
PADDINGS = ("chapter", "same")
MAX_CONV_LAYERS = 3
MAX_DENSE_LAYERS = 3


class ConfigError(ValueError):
    """A setting (or combination of settings) that cannot make a working network."""

    def __init__(self, setting: str, message: str):
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


@dataclass(frozen=True)
class ModelConfig:
    """Architecture settings. The defaults are the chapter's LeNet-5 exactly.

    `conv_channels` has one entry per conv block (conv -> activation -> pool) and
    `dense_widths` one per hidden dense layer; the output layer is always added.
    With padding "chapter" the first conv keeps the image size and later ones
    shrink it by kernel_size - 1, as in the book; "same" pads every conv.
    """

    activation: str = "sigmoid"
    pooling: str = "avg"
    kernel_size: int = 5
    conv_channels: tuple[int, ...] = (6, 16)
    dense_widths: tuple[int, ...] = (120, 84)
    init: str = "xavier"
    padding: str = "chapter"
    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 28

    def __post_init__(self):
        # Lists arrive from JSON and from widgets; keep the object hashable.
        object.__setattr__(self, "conv_channels", tuple(int(c) for c in self.conv_channels))
        object.__setattr__(self, "dense_widths", tuple(int(w) for w in self.dense_widths))

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["conv_channels"] = list(self.conv_channels)
        d["dense_widths"] = list(self.dense_widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(sorted(unknown)[0], "is not a model setting")
        return cls(**d)

    def validate(self) -> list[tuple[str, tuple[int, ...]]]:
        """Raise ConfigError if the network cannot be built; else return the
        (layer name, output shape without batch) of every layer."""
        if self.activation not in ACTIVATIONS:
            raise ConfigError("activation", f"'{self.activation}' is not one of {', '.join(ACTIVATIONS)}")
        if self.pooling not in POOLINGS:
            raise ConfigError("pooling", f"'{self.pooling}' is not one of {', '.join(POOLINGS)}")
        if self.init not in INITS:
            raise ConfigError("init", f"'{self.init}' is not one of {', '.join(INITS)}")
        if self.padding not in PADDINGS:
            raise ConfigError("padding", f"'{self.padding}' is not one of {', '.join(PADDINGS)}")
        if not 1 <= len(self.conv_channels) <= MAX_CONV_LAYERS:
            raise ConfigError("conv_channels", f"needs 1 to {MAX_CONV_LAYERS} conv layers, got {len(self.conv_channels)}")
        if len(self.dense_widths) > MAX_DENSE_LAYERS:
            raise ConfigError("dense_widths", f"at most {MAX_DENSE_LAYERS} hidden dense layers, got {len(self.dense_widths)}")
        if self.kernel_size < 1:
            raise ConfigError("kernel_size", f"must be at least 1, got {self.kernel_size}")
        for i, c in enumerate(self.conv_channels, 1):
            if c < 1:
                raise ConfigError("conv_channels", f"conv{i} has {c} channels; each conv layer needs at least 1")
        for i, w in enumerate(self.dense_widths, 1):
            if w < 1:
                raise ConfigError("dense_widths", f"fc{i} has width {w}; each dense layer needs at least 1 unit")
        if self.num_classes < 2:
            raise ConfigError("num_classes", f"needs at least 2 classes, got {self.num_classes}")

        shapes = []
        c, s = self.in_channels, self.image_size
        for i, out_c in enumerate(self.conv_channels, 1):
            size_in, s = s, s + 2 * self.conv_padding(i) - self.kernel_size + 1
            if s < 1:
                k = self.kernel_size
                raise ConfigError(
                    "kernel_size",
                    f"conv{i} gets a {size_in}x{size_in} input, too small for a {k}x{k} kernel: its output would be "
                    f"{max(s, 0)}x{max(s, 0)} (it needs at least 1x1); use a smaller kernel, fewer conv layers "
                    f"or padding 'same'")
            c = out_c
            shapes += [(f"conv{i}", (c, s, s)), (f"conv{i}_act", (c, s, s))]
            s = s // 2
            if s < 1:
                raise ConfigError(
                    "conv_channels",
                    f"pooling after conv{i} would shrink the feature map to 0x0 (it was "
                    f"{shapes[-1][1][1]}x{shapes[-1][1][1]}); use fewer conv layers, a smaller kernel or padding 'same'")
            shapes.append((f"conv{i}_pool", (c, s, s)))
        features = c * s * s
        shapes.append(("flatten", (features,)))
        for i, w in enumerate(self.dense_widths, 1):
            shapes += [(f"fc{i}", (w,)), (f"fc{i}_act", (w,))]
        shapes.append(("output", (self.num_classes,)))
        return shapes

    def conv_padding(self, i: int) -> int:
        if self.padding == "same" or i == 1:
            return self.kernel_size // 2 if self.kernel_size % 2 else 0
        return 0


PRESETS: dict[str, ModelConfig] = {
    "classic": ModelConfig(),
    "modern": ModelConfig(activation="relu", pooling="max"),
}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError("preset", f"'{name}' is not one of {', '.join(PRESETS)}") from None


class _FlattenKeepFormat(torch.autograd.Function):
    """flatten(1) whose gradient comes back in the input's memory format."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.flatten(1)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


class Flatten(nn.Flatten):
    """nn.Flatten, but a channels-last input gets a channels-last gradient.

    The trainer runs convolutions channels-last on the CPU. Plain flatten hands the
    last pooling layer an NCHW gradient for an NHWC input, and pooling's backward
    is several times slower on mixed layouts than on one (about 0.3 ms of a 6 ms
    step for `classic` at batch 128). Same outputs, same parameters (none)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dim() == 4 and x.requires_grad and x.is_contiguous(memory_format=torch.channels_last)
                and not x.is_contiguous()):
            return _FlattenKeepFormat.apply(x)
        return super().forward(x)


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


class AvgPool2d(nn.AvgPool2d):
    """nn.AvgPool2d(2, 2), but a channels-last training input of a large enough map
    takes _AvgPool2x2's faster kernels. Same outputs, same gradients, no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dim() == 4 and x.requires_grad and x.shape[1] > 1 and x.shape[2] >= 16
                and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0 and self._is_2x2()
                and x.is_contiguous(memory_format=torch.channels_last)):
            return _AvgPool2x2.apply(x)
        return super().forward(x)

    def _is_2x2(self) -> bool:
        return (self.kernel_size in (2, (2, 2)) and self.stride in (2, (2, 2)) and self.padding in (0, (0, 0))
                and not self.ceil_mode and self.divisor_override is None)


POOLINGS = {"avg": AvgPool2d, "max": nn.MaxPool2d}


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
    if not (_plain_conv(conv) and isinstance(pool, AvgPool2d) and pool._is_2x2()
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


class LeNet(nn.Module):
    """A LeNet-style CNN whose every layer is a named child of `self.net`."""

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        shapes = dict(config.validate())
        self.config = config
        act, pool = ACTIVATIONS[config.activation], POOLINGS[config.pooling]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_c = config.in_channels
        for i, out_c in enumerate(config.conv_channels, 1):
            # Even kernels with "same" padding would change the size; validate() used 0 padding for them.
            layers[f"conv{i}"] = nn.Conv2d(in_c, out_c, config.kernel_size, padding=config.conv_padding(i))
            layers[f"conv{i}_act"] = act()
            layers[f"conv{i}_pool"] = pool(kernel_size=2, stride=2)
            in_c = out_c
        layers["flatten"] = Flatten()
        features = shapes["flatten"][0]
        for i, width in enumerate(config.dense_widths, 1):
            layers[f"fc{i}"] = nn.Linear(features, width)
            layers[f"fc{i}_act"] = act()
            features = width
        layers["output"] = nn.Linear(features, config.num_classes)
        self.net = nn.Sequential(layers)
        self.reset_parameters()

    def reset_parameters(self):
        # Like the book's init_cnn: only weights are re-initialised; biases keep
        # PyTorch's default uniform(+-1/sqrt(fan_in)).
        for m in self.net:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if self.config.init == "xavier":
                    nn.init.xavier_uniform_(m.weight)
                elif self.config.init == "kaiming":
                    nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if self.training and torch.is_grad_enabled() and _phase_block_fits(net.conv1, net.conv1_pool, x):
            # Training on the CPU: the first block by space-to-depth (conv_phases), then the rest.
            h = net.conv1_act(conv_phases(x, net.conv1))
            h = F.conv2d(h, _phase_mean_weight(net.conv1.out_channels, h.dtype, h.device))
            rest = self._after_first_block
            if _nchw_input_grad_fits(rest[0]):
                h = _ConvNCHWInputGrad.apply(h, rest[0].weight, rest[0].bias, rest[0].padding)
                rest = rest[1:]
            for layer in rest:
                h = layer(h)
            return h
        return net(x)

    @functools.cached_property
    def _after_first_block(self) -> list[nn.Module]:
        return list(self.net)[3:]


def plain_torch(model: LeNet) -> nn.Sequential:
    """The same network, layer for layer and sharing its parameters, built only from torch.nn's
    own modules: what the chapter's code computes, with none of the training fast paths above.
    For references (tests, benchmarks/train_throughput.py)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for name, layer in model.net.named_children():
        if isinstance(layer, AvgPool2d):
            layer = nn.AvgPool2d(layer.kernel_size, layer.stride)
        elif isinstance(layer, Flatten):
            layer = nn.Flatten()
        layers[name] = layer
    return nn.Sequential(layers)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int


def layer_summary(config_or_model: ModelConfig | LeNet, batch_size: int = 1) -> list[LayerRow]:
    """Each layer's name, type, output shape (with batch) and parameter count,
    found by pushing a zero batch through the network (as the book does)."""
    model = config_or_model if isinstance(config_or_model, LeNet) else LeNet(config_or_model)
    cfg = model.config
    x = torch.zeros(batch_size, cfg.in_channels, cfg.image_size, cfg.image_size)
    rows = []
    with torch.no_grad():
        for name, layer in model.net.named_children():
            x = layer(x)
            rows.append(LayerRow(name, type(layer).__name__, tuple(x.shape),
                                 sum(p.numel() for p in layer.parameters())))
    return rows


def format_summary(rows: list[LayerRow]) -> str:
    lines = [f"{'layer':<12} {'type':<10} {'output shape':<18} {'params':>8}"]
    for r in rows:
        lines.append(f"{r.name:<12} {r.kind:<10} {str(r.output_shape):<18} {r.parameters:>8,}")
    lines.append(f"{'total':<12} {'':<10} {'':<18} {sum(r.parameters for r in rows):>8,}")
    return "\n".join(lines)


def forward_flops(config: ModelConfig) -> int:
    """Multiply-adds x2 of one forward pass for one image (convs and dense layers)."""
    flops = 0
    in_c = config.in_channels
    for name, shape in config.validate():
        if name.startswith("conv") and name[4:].isdigit():
            c, h, w = shape
            flops += 2 * c * h * w * in_c * config.kernel_size ** 2
            in_c = c
    widths = [s[0] for n, s in config.validate() if n == "flatten" or n.startswith("fc") and "_" not in n or n == "output"]
    flops += sum(2 * a * b for a, b in zip(widths, widths[1:]))
    return flops
