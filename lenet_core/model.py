"""LeNet-5 as the chapter builds it, and the variations its exercises ask for, from one settings object."""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .settings import ConfigError, check_bounds, coerce, declared, from_dict, setting

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}
POOLINGS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
INITS, PADDINGS = ("xavier", "kaiming", "default"), ("chapter", "same")
MAX_CONV_LAYERS, MAX_DENSE_LAYERS = 3, 3
# What one server lets a user ask for: LeNet-5 has 61,706 parameters and needs 0.42 million
# multiply-adds per image; these caps are about 80 and 240 times that.
MAX_PARAMETERS, MAX_MULTIPLY_ADDS = 5_000_000, 100_000_000


@dataclass(frozen=True)
class ModelConfig:
    """The architecture. The defaults are the chapter's LeNet-5 exactly.

    `conv_channels` has one entry per conv block (conv -> activation -> 2x2 pool) and
    `dense_widths` one per hidden dense layer; the output layer is always added. With padding
    "chapter" only the first conv keeps the image size, as in the book; "same" pads every conv."""

    activation: str = setting("sigmoid", "Activation", "The chapter uses sigmoid; ReLU is the modern choice.",
                              choices=tuple(ACTIVATIONS))
    pooling: str = setting("avg", "Pooling", "The chapter uses 2×2 average pooling; max pooling keeps the "
                                             "strongest response.", choices=tuple(POOLINGS))
    kernel_size: int = setting(5, "Kernel size", "Each convolution looks at a k×k window. The chapter uses 5×5.",
                               short="kernel", low=1, high=11)
    conv_channels: tuple[int, ...] = setting((6, 16), "Conv channels", "Feature maps of each conv layer, 1 to 3 "
                                             "layers. The chapter has 6, then 16.", short="conv",
                                             low=1, high=128, items=(1, MAX_CONV_LAYERS))
    dense_widths: tuple[int, ...] = setting((120, 84), "Dense widths", "Units of each hidden dense layer, 0 to 3 "
                                            "layers. The chapter has 120, then 84.", short="dense",
                                            low=1, high=1024, items=(0, MAX_DENSE_LAYERS))
    init: str = setting("xavier", "Initialisation", "**xavier** is the chapter's init_cnn; **kaiming** suits ReLU; "
                                                    "**default** is PyTorch's own.", short="init", choices=INITS)
    padding: str = setting("chapter", "Padding", "**chapter**: only the first conv is padded (28→28, then 14→10). "
                                                 "**same**: every conv keeps its input size.", choices=PADDINGS)
    # The data sets' shape: every page works with 28x28 grayscale images of 10 classes.
    num_classes: int = setting(10, "Classes", "Outputs of the last layer.", choices=(10,), cli=False)
    in_channels: int = setting(1, "Input channels", "Grayscale images.", choices=(1,), cli=False)
    image_size: int = setting(28, "Image size", "Height and width of the input.", choices=(28,), cli=False)

    def __post_init__(self):  # lists arrive from JSON and widgets; keep the object hashable
        for name in ("conv_channels", "dense_widths"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "conv_channels": list(self.conv_channels),
                "dense_widths": list(self.dense_widths)}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return from_dict(cls, d, "model setting")

    def conv_padding(self, i: int) -> int:
        # An even kernel cannot keep the size with symmetric padding; it gets none.
        if self.padding == "same" or i == 1:
            return self.kernel_size // 2 if self.kernel_size % 2 else 0
        return 0

    def layer_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(layer name, output shape without the batch) of every layer, worked out without building
        anything; ConfigError where the feature maps would shrink to nothing."""
        for name in ("activation", "pooling", "init", "padding", "conv_channels", "dense_widths"):
            coerce(ModelConfig, name, getattr(self, name))  # known choices, 1-3 conv and 0-3 dense layers
        if self.kernel_size < 1:
            raise ConfigError("kernel_size", f"must be at least 1, got {self.kernel_size}")
        for name, values, what in (("conv_channels", self.conv_channels, "conv{} has {} channels"),
                                   ("dense_widths", self.dense_widths, "fc{} has width {}")):
            for i, v in enumerate(values, 1):
                if v < 1:
                    raise ConfigError(name, what.format(i, v) + "; each layer needs at least 1")
        shapes, size, k = [], self.image_size, self.kernel_size
        for i, c in enumerate(self.conv_channels, 1):
            size_in, size = size, size + 2 * self.conv_padding(i) - k + 1
            if size < 1:
                raise ConfigError("kernel_size", f"conv{i} gets a {size_in}x{size_in} input, too small for "
                                                 f"{'an' if k in (8, 11, 18) else 'a'} {k}x{k} "
                                                 f"kernel: its output would be {max(size, 0)}x{max(size, 0)}; use a "
                                                 "smaller kernel, fewer conv layers or padding 'same'")
            shapes += [(f"conv{i}", (c, size, size)), (f"conv{i}_act", (c, size, size))]
            if size // 2 < 1:
                raise ConfigError("conv_channels", f"pooling after conv{i} would shrink its {size}x{size} maps to 0x0; "
                                                   "use fewer conv layers, a smaller kernel or padding 'same'")
            size //= 2
            shapes.append((f"conv{i}_pool", (c, size, size)))
        shapes.append(("flatten", (self.conv_channels[-1] * size * size,)))
        for i, w in enumerate(self.dense_widths, 1):
            shapes += [(f"fc{i}", (w,)), (f"fc{i}_act", (w,))]
        return shapes + [("output", (self.num_classes,))]

    def counts(self) -> tuple[int, int]:
        """(parameters, multiply-adds of one image's forward pass), from the shapes alone."""
        params = macs = 0
        fan_in = self.in_channels * self.kernel_size ** 2
        for name, shape in self.layer_shapes():
            if name == "flatten":
                fan_in = shape[0]
            elif "_" not in name:  # a conv, dense or output layer
                units, positions = shape[0], (shape[1] * shape[2] if len(shape) == 3 else 1)
                params, macs = params + units * (fan_in + 1), macs + units * positions * fan_in
                fan_in = units * self.kernel_size ** 2 if len(shape) == 3 else units
        return params, macs

    def validate(self) -> list[tuple[str, tuple[int, ...]]]:
        """Every setting within the bounds this app supports, a network that can be built, and not
        too large to train here; returns layer_shapes(). Nothing is allocated to find out."""
        check_bounds(self)
        shapes = self.layer_shapes()
        params, macs = self.counts()
        if params > MAX_PARAMETERS:
            raise ConfigError("dense_widths" if self.dense_widths else "conv_channels",
                              f"this network would have {params:,} parameters, over the {MAX_PARAMETERS:,} "
                              "allowed here (LeNet-5 has 61,706); use fewer channels or units")
        if macs > MAX_MULTIPLY_ADDS:
            raise ConfigError("conv_channels", f"this network needs {macs / 1e6:,.0f} million multiply-adds per "
                                               f"image, over the {MAX_MULTIPLY_ADDS / 1e6:,.0f} million allowed here "
                                               "(LeNet-5: 0.4 million); use fewer channels or a smaller kernel")
        return shapes


PRESETS: dict[str, ModelConfig] = {
    "classic": ModelConfig(),
    "modern": ModelConfig(activation="relu", pooling="max"),  # the chapter's first exercise
}


def nearest_preset(model: ModelConfig) -> str:
    """The preset that differs from `model` in the fewest settings."""
    return min(PRESETS, key=lambda p: sum(getattr(PRESETS[p], k) != getattr(model, k) for k in declared(ModelConfig)))


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError("preset", f"'{name}' is not one of {', '.join(PRESETS)}") from None


class LeNet(nn.Module):
    """A LeNet-style CNN; every layer is a named child of `self.net`, so layers can be read by name."""

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        shapes = dict(config.layer_shapes())
        self.config = config
        act, pool = ACTIVATIONS[config.activation], POOLINGS[config.pooling]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = config.in_channels
        for i, out in enumerate(config.conv_channels, 1):
            layers[f"conv{i}"] = nn.Conv2d(channels, out, config.kernel_size, padding=config.conv_padding(i))
            layers[f"conv{i}_act"] = act()
            layers[f"conv{i}_pool"] = pool(kernel_size=2, stride=2)
            channels = out
        layers["flatten"] = nn.Flatten()
        features = shapes["flatten"][0]
        for i, width in enumerate(config.dense_widths, 1):
            layers[f"fc{i}"] = nn.Linear(features, width)
            layers[f"fc{i}_act"] = act()
            features = width
        layers["output"] = nn.Linear(features, config.num_classes)
        self.net = nn.Sequential(layers)
        self.reset_parameters()

    def reset_parameters(self):
        # Like the book's init_cnn: only the weights; biases keep PyTorch's uniform(±1/sqrt(fan_in)).
        for m in self.net:
            if isinstance(m, (nn.Conv2d, nn.Linear)) and self.config.init != "default":
                if self.config.init == "xavier":
                    nn.init.xavier_uniform_(m.weight)
                else:
                    nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
