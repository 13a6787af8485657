"""LeNets trained elsewhere, from their plain PyTorch state dicts: the chapter's notebook
(`net.0.weight` ... `net.11.bias`), a bare nn.Sequential (`0.weight` ...), PyTorch's tutorial
(`conv1`, `conv2`, `fc1`, `fc2`, `fc3`) or any names, in the order the layers were defined,
alone or under `state_dict`, `model_state_dict` or `model`.

The architecture is read from the tensors' shapes and mapped onto a ModelConfig; what a state
dict cannot say (the activation, the pooling, how the inputs were scaled) is given, or tried on a
sample of the test set, the best taken. The file is read as a checkpoint is (checkpoint._read:
weights_only, size checks), so nothing in it runs, and nothing is built before every shape fits."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .checkpoint import Checkpoint, CheckpointError, ForeignTorchFile, load_checkpoint
from .data import DATASETS, ImageData
from .model import ACTIVATIONS, MAX_CONV_LAYERS, MAX_DENSE_LAYERS, MAX_PARAMETERS, PADDINGS, POOLINGS, LeNet, ModelConfig
from .settings import ConfigError
from .train import TrainConfig, as_input, evaluate

NESTED = ("state_dict", "model_state_dict", "model")  # where checkpoints of other tools keep the weights
# How the images were scaled before the network saw them: x' = (x - mean) / std, x in [0, 1].
SCALINGS = {"unit": "[0, 1] input", "symmetric": "[-1, 1] input", "standardized": "standardized input"}
SCALING_HELP = ("unit: ToTensor() alone, pixels in [0, 1], as the chapter; symmetric: Normalize((0.5,), (0.5,)), "
                "[-1, 1], as PyTorch's tutorials; standardized: Normalize(mean, std) of the data set "
                "(MNIST 0.1307, 0.3081; Fashion-MNIST 0.2860, 0.3530)")
MEAN_STD = {"fashion-mnist": (0.2860, 0.3530), "mnist": (0.1307, 0.3081)}
POOL_WORDS = {"avg": "average pooling", "max": "max pooling"}
SAMPLE = 1000      # test images the guess tries each combination on
NEAR_TIE = 0.01    # accuracies this close to the best, with losses this close to the least
SAME_LOSS = (0.02, 0.01)  # (relative, absolute), fit equally well
EXPRESSIBLE = ("LeNet Lab builds 1 to 3 conv layers (one kernel size, each followed by an activation and "
               "2x2 pooling) and up to 3 hidden dense layers before a 10-class output, on 28x28 grayscale images")


class NotImportable(CheckpointError):
    """A torch file whose weights are not a network LeNet Lab can express; the message says which tensor."""


@dataclass
class Layer:
    name: str                 # its name in the file: "net.3", "conv2"
    weight: torch.Tensor
    bias: torch.Tensor

    @property
    def kind(self) -> str:
        return "conv" if self.weight.dim() == 4 else "dense"


@dataclass
class Architecture:
    """What a state dict's tensors say about its network, as LeNet Lab builds it."""

    layout: str               # "the chapter's layout (net.0 ... net.11)", ...
    convs: list[Layer]
    denses: list[Layer]       # the hidden layers, then the output layer
    padding: str              # "chapter" or "same": the one that makes the flatten size fit
    kernel_size: int

    def model_config(self, activation: str = "sigmoid", pooling: str = "avg") -> ModelConfig:
        return ModelConfig(activation=activation, pooling=pooling, kernel_size=self.kernel_size,
                           conv_channels=tuple(c.weight.shape[0] for c in self.convs),
                           dense_widths=tuple(d.weight.shape[0] for d in self.denses[:-1]), padding=self.padding)

    def describe(self) -> list[str]:
        """One line per layer, with the name it had in the file."""
        config, lines = self.model_config(), []
        for i, c in enumerate(self.convs, 1):
            out, inp, k, _ = c.weight.shape
            pad = config.conv_padding(i)
            lines.append(f"{c.name}: conv {inp}→{out} channels, {k}×{k}" + (f", padded {pad}" if pad else "")
                         + ", then activation and 2×2 pooling")
        flat = dict(config.layer_shapes())["flatten"][0]
        for d in self.denses:
            out, inp = d.weight.shape
            lines.append(f"{d.name}: dense {inp}→{out}" + (" (flattened maps)" if inp == flat and d is self.denses[0]
                                                           else "") + (", the output" if d is self.denses[-1] else ""))
        return lines


@dataclass
class Trial:
    """One combination of what the weights cannot say, tried on a sample of the test set."""

    activation: str
    pooling: str
    scaling: str
    accuracy: float
    loss: float
    count: int

    def label(self) -> str:
        return f"{self.activation} + {POOL_WORDS[self.pooling]}, {SCALINGS[self.scaling]}"

    def to_dict(self) -> dict:
        return {"activation": self.activation, "pooling": self.pooling, "scaling": self.scaling,
                "accuracy": round(self.accuracy, 4), "loss": round(self.loss, 4), "images": self.count}


@dataclass
class Check:
    """The trials, best first, and which were given rather than tried."""

    trials: list[Trial]
    given: dict = field(default_factory=dict)
    ties: int = 1             # how many at the top fit equally well (the first taken)

    @property
    def best(self) -> Trial:
        return self.trials[0]

    def summary(self) -> str:
        """One line: what was taken and why, e.g. "sigmoid + average pooling, [0, 1] input: 72.8% on
        1,000 test images; next relu + max pooling, [0, 1] input: 10.1%"."""
        best = self.best
        line = f"{best.label()}: {best.accuracy:.1%} on {best.count:,} test images"
        if len(self.trials) > 1:
            line += "; next " + "; ".join(f"{t.label()}: {t.accuracy:.1%}" for t in self.trials[1:3])
        return line

    def doubt(self) -> str | None:
        """A warning when the sample cannot tell the best apart, or nothing fits."""
        best = self.best
        if best.accuracy < 0.3:
            return (f"no combination fits well: the best gets {best.accuracy:.0%} (chance is 10%); are these "
                    "weights for this data set, with this layer order, and trained past chance?")
        if self.ties > 1:
            other = self.trials[1]
            differ = [w for w, a, b in (("activation", best.activation, other.activation), ("pooling", best.pooling,
                      other.pooling), ("input scaling", best.scaling, other.scaling)) if a != b]
            return (f"{best.label()} and {other.label()} fit these images about equally well; if you know its "
                    f"{' and '.join(differ)}, give it")
        return None


# -- reading ---------------------------------------------------------------------------------

def _state_dict(payload, name: str) -> tuple[dict, str]:
    """The mapping of names to tensors in a loaded file, and where in it that was."""
    if not isinstance(payload, dict):
        raise NotImportable(f"{name} holds a {type(payload).__name__}, not a state dict (a mapping of layer names "
                            "to tensors, as torch.save(model.state_dict(), ...) writes)")
    for key in NESTED:
        if isinstance(payload.get(key), dict):
            inner, where = _state_dict(payload[key], name)
            return inner, f"[{key!r}]" + where
    if not any(isinstance(v, torch.Tensor) for v in payload.values()):
        keys = ", ".join(map(str, list(payload)[:6])) or "none"
        raise NotImportable(f"{name} holds no weights LeNet Lab can find: its keys are {keys:.120}; it looks for "
                            f"a state dict, alone or under {', '.join(NESTED)}")
    return payload, ""


def _layout(names: list[str]) -> str:
    if all(re.fullmatch(r"net\.\d+", n) for n in names):
        return "the chapter's layout (net.N)"
    if all(re.fullmatch(r"\d+", n) for n in names):
        return "an nn.Sequential's layout (N)"
    return "named layers, in the order they were defined"


def _layers(weights: dict, name: str) -> list[Layer]:
    """The weighted layers in the file's order, each a weight and a bias; anything else refused."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    total = 0
    for key, value in weights.items():
        if not isinstance(key, str):
            raise NotImportable(f"{name}: the key {key!r:.40} is not a layer's name")
        if not isinstance(value, torch.Tensor):
            raise NotImportable(f"{name}: {key:.60} is a {type(value).__name__}, not a tensor; a state dict holds "
                                "only tensors")
        # Sizes before values: a tensor saved as a view (expand) can declare billions of values on a
        # storage of one, and reading them would allocate what it declares.
        total += value.numel()
        if total > MAX_PARAMETERS:
            raise NotImportable(f"{name}: {key:.60} declares {value.numel():,} values (shape {tuple(value.shape)}), "
                                f"past the {MAX_PARAMETERS:,} parameters of the largest network LeNet Lab builds")
        prefix, _, part = key.rpartition(".")
        if part in ("running_mean", "running_var", "num_batches_tracked"):
            raise NotImportable(f"{name}: {prefix:.60} is a batch-norm layer ({key:.60}), which LeNet Lab has no "
                                f"control for; {EXPRESSIBLE}")
        if part not in ("weight", "bias"):
            raise NotImportable(f"{name}: {key:.60} belongs to a layer LeNet Lab has no control for; {EXPRESSIBLE}")
        groups.setdefault(prefix, {})[part] = value
    layers = []
    for prefix, parts in groups.items():
        w = parts.get("weight")
        if w is None:
            raise NotImportable(f"{name}: {prefix:.60} has a bias but no weight")
        if w.dim() not in (2, 4):
            raise NotImportable(f"{name}: {prefix:.60}.weight has shape {tuple(w.shape)}, neither a conv layer's "
                                f"(4 dimensions) nor a dense layer's (2): a layer LeNet Lab has no control for; "
                                f"{EXPRESSIBLE}")
        b = parts.get("bias")
        b = torch.zeros(w.shape[0], dtype=w.dtype) if b is None else b  # bias=False is a bias of zeros
        if tuple(b.shape) != (w.shape[0],):
            raise NotImportable(f"{name}: {prefix:.60}.bias has shape {tuple(b.shape)}, not ({w.shape[0]},) as its "
                                "weight needs")
        for t, part in ((w, "weight"), (b, "bias")):
            if not t.is_floating_point():
                raise NotImportable(f"{name}: {prefix:.60}.{part} holds {t.dtype} values, not floats")
            if not torch.isfinite(t).all():
                raise NotImportable(f"{name}: {prefix:.60}.{part} holds NaN or infinite values")
        layers.append(Layer(prefix, w.detach().float().contiguous(), b.detach().float().contiguous()))
    if not layers:
        raise NotImportable(f"{name} holds no layer weights")
    return layers


def read_architecture(weights: dict, name: str = "the file") -> Architecture:
    """The network a state dict describes, as a ModelConfig can build it; NotImportable saying
    which tensor does not fit otherwise. Only shapes are looked at; nothing is built."""
    layers = _layers(weights, name)
    convs = [layer for layer in layers if layer.kind == "conv"]
    denses = [layer for layer in layers if layer.kind == "dense"]
    kinds = [layer.kind for layer in layers]
    if "dense" in kinds and "conv" in kinds[kinds.index("dense"):]:
        late = layers[kinds.index("conv", kinds.index("dense"))]
        raise NotImportable(f"{name}: {late.name} is a conv layer after the dense layer {denses[0].name}; "
                            f"{EXPRESSIBLE}")
    if not convs:
        raise NotImportable(f"{name} has no conv layer (its first layer, {layers[0].name}, is dense); {EXPRESSIBLE}")
    if not denses:
        raise NotImportable(f"{name} has no dense layer after its conv layers; {EXPRESSIBLE}")
    if len(convs) > MAX_CONV_LAYERS:
        raise NotImportable(f"{name} has {len(convs)} conv layers ({convs[MAX_CONV_LAYERS].name} is one too many); "
                            f"{EXPRESSIBLE}")
    if len(denses) > MAX_DENSE_LAYERS + 1:
        raise NotImportable(f"{name} has {len(denses)} dense layers ({denses[MAX_DENSE_LAYERS + 1].name} is one "
                            f"too many); {EXPRESSIBLE}")
    first = convs[0].weight.shape
    if first[1] != 1:
        raise NotImportable(f"{name}: {convs[0].name}.weight takes {first[1]}-channel images (shape "
                            f"{tuple(first)}), colour pictures such as CIFAR's; {EXPRESSIBLE}")
    for before, c in zip(convs, convs[1:]):
        if c.weight.shape[1] != before.weight.shape[0]:
            raise NotImportable(f"{name}: {c.name}.weight takes {c.weight.shape[1]} channels, but {before.name} "
                                f"gives {before.weight.shape[0]}: the shapes do not chain")
    for c in convs:
        k = c.weight.shape[2:]
        if k[0] != k[1]:
            raise NotImportable(f"{name}: {c.name} has {k[0]}×{k[1]} kernels; LeNet Lab's kernels are square")
        if k[0] != first[2]:
            raise NotImportable(f"{name}: {c.name} has {k[0]}×{k[0]} kernels and {convs[0].name} {first[2]}×"
                                f"{first[2]}; LeNet Lab uses one kernel size for every conv layer")
    for before, d in zip(denses, denses[1:]):
        if d.weight.shape[1] != before.weight.shape[0]:
            raise NotImportable(f"{name}: {d.name}.weight takes {d.weight.shape[1]} inputs, but {before.name} "
                                f"gives {before.weight.shape[0]}: the shapes do not chain")
    classes = denses[-1].weight.shape[0]
    if classes != 10:
        raise NotImportable(f"{name}: its last layer {denses[-1].name} has {classes} outputs; LeNet Lab's data "
                            "sets have 10 classes")
    arch = Architecture(_layout(list(dict.fromkeys(layer.name for layer in layers))), convs, denses, "chapter",
                        int(first[2]))
    flat_in, sizes = denses[0].weight.shape[1], {}
    for padding in PADDINGS:  # the padding that makes the flatten size fit the first dense layer
        arch.padding = padding
        try:
            sizes[padding] = dict(arch.model_config().layer_shapes())["flatten"][0]
        except ConfigError:
            continue
        if sizes[padding] == flat_in:
            break
    else:
        told = {}
        for p, n in sizes.items():
            told.setdefault(n, f"{n:,} ({'first conv padded, as the chapter' if p == 'chapter' else 'every conv padded'})")
        raise NotImportable(f"{name}: {denses[0].name}.weight takes {flat_in:,} inputs, but "
                            f"{convs[-1].weight.shape[0]} channels after {len(convs)} conv layer"
                            f"{'s' if len(convs) > 1 else ''} of {first[2]}×{first[2]} kernels with 2×2 pooling on a "
                            f"28x28 image give {' or '.join(told.values()) or 'no map at all'}: the shapes do not chain as LeNet Lab builds them")
    try:
        arch.model_config().validate()
    except ConfigError as e:
        raise NotImportable(f"{name} is a network LeNet Lab cannot build here: {e}") from None
    return arch


def read_file(source, name: str | None = None, limit: int | None = None) -> Checkpoint | Architecture:
    """A LeNet Lab checkpoint as it is, or the architecture of a plain state dict; CheckpointError
    (its message for the user) for anything else. Read as a checkpoint is (at most `limit` bytes):
    nothing in it runs."""
    name = name or (str(source) if isinstance(source, (str, os.PathLike)) else "the uploaded file")
    try:
        return load_checkpoint(source, name, limit)
    except ForeignTorchFile as e:
        weights, where = _state_dict(e.payload, name)
    arch = read_architecture(weights, name + where)
    arch.layout = f"a state dict{' under ' + where if where else ''} in {arch.layout}"
    return arch


# -- building and checking ---------------------------------------------------------------------

def build(arch: Architecture, activation: str, pooling: str, scaling: str = "unit",
          dataset: str = "fashion-mnist") -> LeNet:
    """A LeNet with the file's weights. The input scaling goes into the first conv layer (LeNet Lab
    feeds [0, 1]): w·(x - m)/s + b = (w/s)·x + (b - (m/s)·Σw). That is exact where the network saw
    padding of the scaled background (images padded before normalising, as the tutorial's 32x32);
    a conv that padded the normalised image with zeros differs on the border outputs."""
    model = LeNet(arch.model_config(activation, pooling))
    mean, std = {"unit": (0.0, 1.0), "symmetric": (0.5, 0.5), "standardized": MEAN_STD[dataset]}[scaling]
    state = {}
    for i, c in enumerate(arch.convs, 1):
        w, b = c.weight, c.bias
        if i == 1 and scaling != "unit":
            w, b = w / std, b - (mean / std) * c.weight.sum(dim=(1, 2, 3))
        state[f"net.conv{i}.weight"], state[f"net.conv{i}.bias"] = w, b
    names = [f"fc{i}" for i in range(1, len(arch.denses))] + ["output"]
    for n, d in zip(names, arch.denses):
        state[f"net.{n}.weight"], state[f"net.{n}.bias"] = d.weight, d.bias
    model.load_state_dict(state)
    return model.eval()


def sample_of(data: ImageData, n: int = SAMPLE) -> tuple[torch.Tensor, torch.Tensor]:
    """The same n test images every time (seed 0), for the check."""
    order = torch.randperm(len(data.test_labels), generator=torch.Generator().manual_seed(0))[:n]
    return data.test_images[order], data.test_labels[order]


@torch.inference_mode()
def check(arch: Architecture, data: ImageData, activation: str | None = None, pooling: str | None = None,
          scaling: str | None = None, sample: int = SAMPLE) -> Check:
    """Every combination of what is not given, tried on a sample of the test set, best first.

    Those within a point of the best accuracy and near the least loss fit equally well; among them
    [0, 1] input comes first (the chapter's, and ToTensor's: a ReLU network that is right on every
    image has a lower loss with any larger input scale, so the loss cannot tell the scaling), then
    the lowest loss, which tells a network's activation and pooling apart where accuracy cannot."""
    images, labels = sample_of(data, sample)
    x = as_input(images)
    trials = []
    for act in [activation] if activation else list(ACTIVATIONS):
        for pool in [pooling] if pooling else list(POOLINGS):
            for scale in [scaling] if scaling else list(SCALINGS):
                logits = build(arch, act, pool, scale, data.name)(x)
                trials.append(Trial(act, pool, scale, float((logits.argmax(1) == labels).float().mean()),
                                    float(F.cross_entropy(logits, labels)), len(labels)))
    top = max(t.accuracy for t in trials)
    near = [t for t in trials if t.accuracy >= top - NEAR_TIE]
    least = min(t.loss for t in near)
    same = [t for t in near if t.loss <= least * (1 + SAME_LOSS[0]) + SAME_LOSS[1]]
    same.sort(key=lambda t: (list(SCALINGS).index(t.scaling), t.loss))
    near = same + sorted((t for t in near if t not in same), key=lambda t: t.loss)
    rest = sorted((t for t in trials if t.accuracy < top - NEAR_TIE), key=lambda t: -t.accuracy)
    given = {k: v for k, v in (("activation", activation), ("pooling", pooling), ("scaling", scaling)) if v}
    return Check(near + rest, given, len(same))


def import_run(arch: Architecture, data: ImageData, trial: Trial, source: str, root=None, *,
               name: str | None = None, check_result: Check | None = None, **create):
    """The network with `trial`'s activation, pooling and scaling as an ended run folder, its test
    accuracy measured on the whole test set; its origin says it was imported, from which file."""
    from .runs import from_checkpoint

    model = build(arch, trial.activation, trial.pooling, trial.scaling, data.name)
    result = evaluate(model, data.test_images, data.test_labels)
    config = TrainConfig(model=model.config, dataset=data.name)
    metrics = {"test_accuracy": result["accuracy"], "test_loss": result["loss"],
               "per_class_accuracy": dict(zip(data.classes, result["per_class_accuracy"]))}
    ckpt = Checkpoint(config, model, data.name, tuple(DATASETS[data.name][2]), metrics)
    origin = {"imported": os.path.basename(source), "layout": arch.layout, "layers": [layer.name for layer in
              arch.convs + arch.denses], **trial.to_dict(), "guessed": sorted(
              {"activation", "pooling", "scaling"} - set(check_result.given if check_result else {})),
              "check": [t.to_dict() for t in check_result.trials] if check_result else []}
    run = from_checkpoint(ckpt, root, name=name or f"{os.path.basename(source)} (imported)", origin=origin, **create)
    run.set_status("finished", f"Imported from {os.path.basename(source)} ({trial.label()}).")
    return run, result
