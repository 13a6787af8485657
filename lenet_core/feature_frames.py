"""The map over training: the last hidden layer's output of a fixed sample of test images, at
epoch 0 and each epoch's end, so that a page can replay the test set's map as the network learns
(classes pulling apart, or a sigmoid network sitting in one blob for its first epochs).

The sample is the first `per_class` test images of each class (100 by default: 1,000 images),
in test-set order, the same for every run on the same data set.

File layout of features.pt (torch.save; read it with `load_features`, which uses
torch.load(weights_only=True))::

    format       "lenet-lab/features"
    version      1
    epochs       [0, 1, 2, ...]        true epoch numbers, increasing
    indices      int64 (P,)            the sample's positions in the test set
    labels       int64 (P,)
    layer        "fc2_act"             the layer recorded (hidden_layer() of the model)
    features     float16 (E, P, D)     its output: E epochs, P images, D values
    predictions  uint8 (E, P)          the class each image was given at that epoch
    stride       int                   the thinning stride, as in probes.pt
    budget_bytes int
    model        the ModelConfig as a dict

Size: a frame is P x D x 2 bytes plus P (168 kB for LeNet-5's 84 values and 1,000 images).
Frames beyond the budget (16 MiB by default) are thinned as probes.pt's are: the stride doubles
and only epochs that are multiples of it, plus the latest, are kept. A frame is held to
budget / 16, by recording fewer images per class for very wide last layers."""
from __future__ import annotations

import io
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from .frames import add_frame, thin
from .checkpoint import atomic_write
from .feature_map import hidden_layer
from .model import LeNet, ModelConfig
from .train import as_input

FORMAT = "lenet-lab/features"
VERSION = 1
FILE = "features.pt"
PER_CLASS = 100
DEFAULT_BUDGET_BYTES = 16 * 2**20
MIN_FRAMES = 16
DTYPE = torch.float16


def hidden_width(config: ModelConfig) -> int:
    """Values per image of the last hidden layer (the flattened conv maps without dense layers)."""
    if config.dense_widths:
        return config.dense_widths[-1]
    return dict(config.layer_shapes())["flatten"][0]


def sample_indices(labels: torch.Tensor, per_class: int = PER_CLASS, classes: int = 10) -> torch.Tensor:
    """Test-set positions of the first `per_class` images of each class, ordered by class."""
    labels = labels.cpu()
    return torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in range(classes)])


def per_class_for(config: ModelConfig, budget_bytes: int, min_frames: int = MIN_FRAMES,
                  per_class: int = PER_CLASS) -> int:
    """Images per class such that one frame fits budget / min_frames."""
    frame_limit = budget_bytes // max(1, min_frames)
    per_image = hidden_width(config) * DTYPE.itemsize + 1
    return max(1, min(per_class, frame_limit // (per_image * config.num_classes)))


class FeatureRecorder:
    """Frames (see the module docstring) in memory; `save` writes features.pt. Call `record`
    from the thread that trains, between steps."""

    def __init__(self, config: ModelConfig, indices: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
                 budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.config = config
        self.indices, self.labels = indices.cpu().long(), labels.cpu().long()
        self.images = images.cpu()   # uint8 (P, 28, 28): the sample itself, not kept in the file
        self.budget_bytes = int(budget_bytes)
        self.frame_bytes = len(self.indices) * (hidden_width(config) * DTYPE.itemsize + 1)
        self.max_frames = max(2, self.budget_bytes // max(1, self.frame_bytes))
        self.stride = 1
        self._frames: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def for_data(cls, config: ModelConfig, test_images: torch.Tensor, test_labels: torch.Tensor,
                 budget_bytes: int = DEFAULT_BUDGET_BYTES, per_class: int = PER_CLASS) -> "FeatureRecorder":
        per_class = per_class_for(config, budget_bytes, per_class=per_class)
        idx = sample_indices(test_labels, per_class, config.num_classes)
        return cls(config, idx, test_labels.cpu()[idx], test_images.cpu()[idx], budget_bytes)

    @property
    def epochs(self) -> list[int]:
        return sorted(self._frames)

    def record(self, epoch: int, model: LeNet) -> None:
        """The frame of `epoch` (0 = before training); frames at that epoch or later are
        forgotten first, so a restarted run cannot leave stale ones."""
        if model.config != self.config:
            raise ValueError(f"this recorder is for {self.config}, not for a model of {model.config}")
        epoch = int(epoch)
        self.stride = add_frame(self._frames, epoch, self._capture(model), self.stride, self.max_frames)

    def _thin(self) -> None:
        self.stride = thin(self._frames, self.stride, self.max_frames)

    @torch.inference_mode()
    def _capture(self, model: LeNet) -> tuple[torch.Tensor, torch.Tensor]:
        weight = model.net.conv1.weight
        was_training = model.training
        model.eval()
        stop = hidden_layer(model)
        try:
            # All of the trainer's threads: 1,000 images are a real batch (the probes' 20 are not).
            h = as_input(self.images).to(device=weight.device, dtype=weight.dtype)
            for name, layer in model.net.named_children():
                h = layer(h)
                if name == stop:
                    feats = h.to("cpu", DTYPE).contiguous()
            preds = h.argmax(1).to("cpu", torch.uint8)
        finally:
            model.train(was_training)
        return feats, preds

    def state(self) -> dict:
        epochs = self.epochs
        d = hidden_width(self.config)
        feats = [self._frames[e][0] for e in epochs]
        preds = [self._frames[e][1] for e in epochs]
        p = len(self.indices)
        return {
            "format": FORMAT, "version": VERSION, "epochs": epochs,
            "indices": self.indices.clone(), "labels": self.labels.clone(),
            "layer": hidden_layer(self.config),
            "features": torch.stack(feats) if feats else torch.empty((0, p, d), dtype=DTYPE),
            "predictions": torch.stack(preds) if preds else torch.empty((0, p), dtype=torch.uint8),
            "stride": self.stride, "budget_bytes": self.budget_bytes, "model": self.config.to_dict(),
        }

    def save(self, path: str | os.PathLike) -> Path:
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        atomic_write(Path(path), lambda f: f.write(buf.getbuffer()))
        return Path(path)

    @classmethod
    def resume(cls, path: str | os.PathLike, config: ModelConfig, epoch: int, test_images: torch.Tensor,
               budget_bytes: int | None = None) -> "FeatureRecorder":
        """Carry a run's features.pt on from the end of `epoch` (later frames are dropped)."""
        saved = load_features(path)
        if saved["model"] != config.to_dict():
            raise ValueError(f"{path} holds the features of another model")
        idx = saved["indices"]
        if len(idx) and int(idx.max()) >= len(test_images):
            raise ValueError(f"{path} names test images this data set does not have")
        rec = cls(config, idx, saved["labels"], test_images.cpu()[idx],
                  saved["budget_bytes"] if budget_bytes is None else budget_bytes)
        rec.stride = int(saved["stride"])
        for i, e in enumerate(saved["epochs"]):
            if e <= epoch:
                rec._frames[int(e)] = (saved["features"][i].clone(), saved["predictions"][i].clone())
        rec._thin()
        return rec


def load_features(path: str | os.PathLike) -> dict:
    """Read a features.pt (weights_only). FileNotFoundError for a missing file, ValueError for
    one that is damaged or not a features file of a version this reads."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, TypeError,
            AttributeError, ImportError, KeyError, IndexError, OSError) as e:
        raise ValueError(f"{path} is not a features file ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})"
                         ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a features file")
    if payload.get("version", 0) > VERSION:
        raise ValueError(f"{path} was written by a newer LeNet Lab (features format {payload['version']})")
    need = ("epochs", "indices", "labels", "layer", "features", "predictions", "stride", "budget_bytes", "model")
    missing = [k for k in need if k not in payload]
    if missing:
        raise ValueError(f"{path} is a damaged features file: it lacks {', '.join(missing)}")
    e, p = len(payload["epochs"]), len(payload["indices"])
    f, pr = payload["features"], payload["predictions"]
    if (not isinstance(f, torch.Tensor) or f.dim() != 3 or tuple(f.shape[:2]) != (e, p)
            or not isinstance(pr, torch.Tensor) or tuple(pr.shape) != (e, p) or len(payload["labels"]) != p):
        raise ValueError(f"{path} is a damaged features file: its arrays do not agree in size")
    return payload
