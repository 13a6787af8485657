"""The epoch scrubber's recording: conv maps and filters of fixed probe images, epoch by epoch.

A run records a *frame* before training (epoch 0) and at the end of every epoch: the
post-activation output of every conv layer (`conv1_act`, `conv2_act`, ...) for a fixed set
of probe images, and the weights of every conv layer. Replaying the frames with a slider
shows maps and filters taking shape.

The probe images (`probe_set`) are the first `per_class` test images of each class, in
test-set order, sorted by class: the same for every run on the same data set, so two runs
can be compared image for image.

File layout of probes.pt (torch.save; read it with `load_probes`, which uses
torch.load(weights_only=True), so only tensors and plain data are unpickled)::

    format       "lenet-lab/probes"
    version      1
    epochs       [0, 1, 2, ...]   true epoch numbers, increasing, 0 first when recorded from the start
    images       uint8 (P, 28, 28)    the probe images
    labels       int64 (P,)
    layers       ["conv1", "conv2", ...]
    conv1        float16 (E, P, C1, H1, W1)   conv1_act's output: E epochs, P images, C1 channels
    conv2        float16 (E, P, C2, H2, W2)   ... one entry per conv layer
    filters      {"conv1": float32 (E, C1, C_in, k, k), "conv2": float32 (E, C2, C1, k, k), ...}
    channels     {"conv1": {"kept": C1, "total": ...}, ...}   see "Wide networks" below
    stride       int: the thinning stride (see "Size" below)
    budget_bytes int: the byte budget the frames were kept under
    model        the ModelConfig as a dict
    notes        one sentence each on dtypes, thinning and channels, for a human reading the file

Maps are stored as float16 (half the bytes of float32; 3 significant digits are plenty to
draw a map); call .float() before doing maths with them. Filters stay float32: they are small
for LeNet-sized layers, and their change from one epoch to the next can be finer than
float16 resolves.

Size. All frames of a run have the same size, so the budget (default 40 MiB) is a number of
frames. When one more frame would exceed it, the stride doubles (1, 2, 4, ...) and every
frame whose epoch is not a multiple of the new stride is dropped: the kept epochs are
0, s, 2s, 3s, ... plus always the latest one. Recording then goes on at that spacing (the
latest epoch is kept while it is the latest, and dropped when the next arrives unless it is
a multiple of s). For the chapter's LeNet-5 a frame is about 262 kB with 20 probe images, so
the stride becomes 2 after 159 epochs and 200 epochs end with 101 frames.

Wide networks. With up to 256 channels, 11x11 kernels and three conv layers a full frame
would be tens of MB (the filters alone, 256x256x11x11 floats per layer), leaving the budget
room for one or two frames. So each frame is held to budget / min_frames bytes (16 by default): when a full
frame is larger, only the first C channels of each conv layer are recorded, with C the largest
that fits, and filters only for those channels (output) and the previous layer's recorded
channels (input), so that filters["conv2"][e, o, i] joins recorded map i of conv1 to recorded
map o of conv2. `channels` says how many were kept of how many. Networks of the chapter's
size (and much wider) keep every channel.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from .frames import add_frame, thin
from .checkpoint import CheckpointError, atomic_write, check_format, safe_torch_load
from .data import ImageData
from .diagnostics import one_thread
from .model import LeNet, ModelConfig
from .train import as_input

FORMAT = "lenet-lab/probes"
VERSION = 1
DEFAULT_BUDGET_BYTES = 40 * 2**20
MIN_FRAMES = 16           # a wide network still gets at least this many frames in the budget
MAP_DTYPE, FILTER_DTYPE = torch.float16, torch.float32


def probe_set(data: ImageData, per_class: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The probe images of a data set: the first `per_class` test images of each class, in
    test-set order, ordered by class (fewer for a class with fewer test images).

    Returns (images uint8 (P, 28, 28), labels int64 (P,)) on the CPU."""
    labels = data.test_labels.cpu()
    picks = [torch.nonzero(labels == c).flatten()[:per_class] for c in range(len(data.classes))]
    idx = torch.cat(picks)
    return data.test_images.cpu()[idx].clone(), labels[idx].clone()


def _conv_shapes(config: ModelConfig) -> list[tuple[str, tuple[int, int, int]]]:
    """(conv layer name, its post-activation (C, H, W)) for every conv layer."""
    return [(name[:-4], shape) for name, shape in config.layer_shapes()
            if name.startswith("conv") and name.endswith("_act")]


def _frame_bytes(config: ModelConfig, n_images: int, kept: dict[str, int]) -> int:
    total, in_c = 0, config.in_channels
    k = config.kernel_size
    for name, (_, h, w) in _conv_shapes(config):
        total += n_images * kept[name] * h * w * MAP_DTYPE.itemsize
        total += kept[name] * in_c * k * k * FILTER_DTYPE.itemsize
        in_c = kept[name]
    return total


def _channels_to_keep(config: ModelConfig, n_images: int, frame_limit: int) -> dict[str, int]:
    """The same cap C for every conv layer (min(channels, C)), the largest whose frame fits."""
    shapes = _conv_shapes(config)
    widest = max(c for _, (c, _, _) in shapes)
    for cap in range(widest, 0, -1):
        kept = {name: min(c, cap) for name, (c, _, _) in shapes}
        if _frame_bytes(config, n_images, kept) <= frame_limit:
            return kept
    return {name: 1 for name, _ in shapes}


class ProbeRecorder:
    """Records frames (see the module docstring) into memory; `save` writes probes.pt.

    `budget_bytes` bounds the frames kept (thinning); `min_frames` the size of one frame, to
    budget_bytes / min_frames (fewer channels for wide networks).

    Call `record` from the thread that trains (between steps): it switches the model to eval
    mode for the probe pass and back. Other threads should read the saved file, not `state()`.
    """

    def __init__(self, model_config: ModelConfig, images: torch.Tensor, labels: torch.Tensor,
                 budget_bytes: int = DEFAULT_BUDGET_BYTES, min_frames: int = MIN_FRAMES, *,
                 _kept: dict[str, int] | None = None):
        if images.dtype != torch.uint8 or images.dim() != 3:
            raise ValueError(f"probe images must be uint8 (P, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} probe images but {len(labels)} labels")
        self.config = model_config
        self.images = images.cpu()
        self.labels = labels.cpu().long()
        self.budget_bytes = int(budget_bytes)
        self.layers = [name for name, _ in _conv_shapes(model_config)]
        self.kept = _kept or _channels_to_keep(model_config, len(images), self.budget_bytes // max(1, min_frames))
        self.frame_bytes = _frame_bytes(model_config, len(images), self.kept)
        # Epoch 0 and the latest are always kept, so never fewer than two frames.
        self.max_frames = max(2, self.budget_bytes // self.frame_bytes)
        self.stride = 1
        self._frames: dict[int, dict[str, torch.Tensor]] = {}   # epoch -> {conv1: maps, conv1/filters: ...}
        self._input: tuple[tuple, torch.Tensor] | None = None   # the probe batch, for a device and dtype

    @property
    def epochs(self) -> list[int]:
        return sorted(self._frames)

    # -- recording ---------------------------------------------------------------------------

    def record(self, epoch: int, model: LeNet) -> None:
        """Record the frame of `epoch` (0 = before training). Recording an epoch forgets any
        frame at that epoch or later, so re-recording after a restart cannot leave stale ones."""
        if model.config != self.config:
            raise ValueError(f"this recorder is for {self.config}, not for a model of {model.config}")
        epoch = int(epoch)
        self.stride = add_frame(self._frames, epoch, self._capture(model), self.stride, self.max_frames)

    def _thin(self) -> None:
        self.stride = thin(self._frames, self.stride, self.max_frames)

    def _probe_input(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (device, dtype)
        if self._input is None or self._input[0] != key:
            self._input = key, as_input(self.images).to(device=device, dtype=dtype)
        return self._input[1]

    def _capture(self, model: LeNet) -> dict[str, torch.Tensor]:
        weight = model.net.conv1.weight
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode(), one_thread():
                h = self._probe_input(weight.device, weight.dtype)
                frame, last = {}, f"{self.layers[-1]}_act"
                # Walk the layers ourselves: we need the activation outputs, and nothing after
                # the last conv block (the dense layers would only cost time).
                for name, layer in model.net.named_children():
                    h = layer(h)
                    if name.endswith("_act") and name[:-4] in self.kept:
                        conv = name[:-4]
                        frame[conv] = h[:, :self.kept[conv]].to(
                            "cpu", MAP_DTYPE, memory_format=torch.contiguous_format)
                    if name == last:
                        break
                in_c = self.config.in_channels
                for conv in self.layers:
                    w = getattr(model.net, conv).weight.detach()[:self.kept[conv], :in_c]
                    # copy=True: on the CPU .to() would otherwise hand back the live weights.
                    frame[f"{conv}/filters"] = w.to("cpu", FILTER_DTYPE, memory_format=torch.contiguous_format,
                                                    copy=True)
                    in_c = self.kept[conv]
        finally:
            model.train(was_training)
        return frame

    # -- the file ----------------------------------------------------------------------------

    def state(self) -> dict:
        """The probes.pt payload (module docstring): plain containers, numbers and tensors."""
        epochs = self.epochs
        frames = [self._frames[e] for e in epochs]

        def stacked(key, shape):
            if not frames:
                return torch.empty((0, *shape))
            return torch.stack([f[key] for f in frames])

        payload = {
            "format": FORMAT, "version": VERSION,
            "epochs": epochs,
            "images": self.images.clone(), "labels": self.labels.clone(),
            "layers": list(self.layers),
            "filters": {},
            "channels": {},
            "stride": self.stride,
            "budget_bytes": self.budget_bytes,
            "model": self.config.to_dict(),
            "notes": {
                "dtype": "maps float16 (call .float() before maths), filters float32",
                "thinning": (f"epochs kept: multiples of stride ({self.stride}) plus the latest; the stride "
                             f"doubles when more than {self.max_frames} frames would exceed budget_bytes"),
                "channels": ("per conv layer, the first `kept` of `total` channels; filters[conv][:, o, i] "
                             "joins recorded map i of the previous conv layer to recorded map o"),
            },
        }
        in_c = self.config.in_channels
        k = self.config.kernel_size
        for name, (c, h, w) in _conv_shapes(self.config):
            kept = self.kept[name]
            payload[name] = stacked(name, (len(self.images), kept, h, w)).to(MAP_DTYPE)
            payload["filters"][name] = stacked(f"{name}/filters", (kept, in_c, k, k)).to(FILTER_DTYPE)
            payload["channels"][name] = {"kept": kept, "total": c}
            in_c = kept
        return payload

    def save(self, path: str | os.PathLike) -> Path:
        """Write probes.pt atomically: a temporary file beside it, renamed over it when complete."""
        path = Path(path)
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        atomic_write(path, lambda f: f.write(buf.getbuffer()))
        return path

    @classmethod
    def resume(cls, path: str | os.PathLike, model_config: ModelConfig, epoch: int,
               budget_bytes: int | None = None) -> "ProbeRecorder":
        """Continue a run's probes.pt after an interruption: the run resumes from the end of
        `epoch`, so frames recorded after it (by the interrupted run) are dropped. The probe
        images come from the file. Raises ValueError for a file of another model."""
        probes = load_probes(path)
        if probes["model"] != model_config.to_dict():
            raise ValueError(f"{path} holds the probes of another model ({probes['model']}), "
                             f"not of {model_config.to_dict()}")
        kept = {name: probes["channels"][name]["kept"] for name in probes["layers"]}
        budget = probes["budget_bytes"] if budget_bytes is None else budget_bytes
        rec = cls(model_config, probes["images"], probes["labels"], budget, _kept=kept)
        rec.stride = int(probes["stride"])
        for i, e in enumerate(probes["epochs"]):
            if e <= epoch:
                frame = {}
                for name in rec.layers:
                    frame[name] = probes[name][i].clone()
                    frame[f"{name}/filters"] = probes["filters"][name][i].clone()
                rec._frames[int(e)] = frame
        rec._thin()   # in case the budget is smaller than the file's
        return rec


MAX_FILE_BYTES = 2 * DEFAULT_BUDGET_BYTES  # the budget's frames and the probe images, with room to spare


def load_probes(path: str | os.PathLike) -> dict:
    """Read a probes.pt (weights_only: no code in the file can run; bounded before it is inflated).
    Raises FileNotFoundError for a missing file and ValueError, saying what is wrong, for anything
    that is not a sound probes file this version reads."""
    if not Path(path).exists():
        raise FileNotFoundError(path)
    try:
        payload = check_format(safe_torch_load(path, str(path), limit=MAX_FILE_BYTES, kind="probes file"),
                               str(path), FORMAT, VERSION, kind="probes file")
    except CheckpointError as e:
        raise ValueError(str(e)) from None
    missing = [k for k in ("epochs", "images", "labels", "layers", "filters", "channels", "model")
               if k not in payload]
    if missing:
        raise ValueError(f"{path} is a damaged probes file: it lacks {', '.join(map(str, missing))}")
    layers, epochs = payload["layers"], payload["epochs"]
    sound = (isinstance(layers, list) and all(isinstance(n, str) and isinstance(payload.get(n), torch.Tensor)
                                              for n in layers)
             and isinstance(epochs, list) and all(isinstance(e, int) and not isinstance(e, bool) for e in epochs)
             and isinstance(payload["images"], torch.Tensor) and isinstance(payload["labels"], torch.Tensor)
             and len(payload["images"]) == len(payload["labels"])
             and isinstance(payload["filters"], dict) and isinstance(payload["channels"], dict)
             and isinstance(payload["model"], dict)
             and all(len(payload[n]) == len(epochs) for n in layers)
             and all(isinstance(payload["filters"].get(n), torch.Tensor) and len(payload["filters"][n]) == len(epochs)
                     and isinstance(payload["channels"].get(n), dict) for n in layers))
    if not sound:
        raise ValueError(f"{path} is a damaged probes file: its frames are not the tensors a recording holds")
    return payload
