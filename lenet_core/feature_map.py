"""Where a model puts every test image: the last hidden layer's output (84 values for LeNet-5)
of a set of images, projected to two dimensions (PCA at once; UMAP or t-SNE on request), and
a cache of the result beside the model, so that a second look is a file read.

Pure functions of (model, images), plus a cache reader that treats a damaged file as missing.
The cache file is an .npz (no pickles) holding the map and the model's fingerprint: a run that
trains on changes its weights, and so its fingerprint, and its old map is not shown for it."""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write
from .diagnostics import one_thread
from .model import LeNet, ModelConfig
from .train import as_input

METHODS = ("PCA", "UMAP", "t-SNE")
CACHE_VERSION = 1


def hidden_layer(model: LeNet | ModelConfig) -> str:
    """The name of the last hidden layer's output: the last dense activation, or the flattened
    conv maps of a network with no hidden dense layer."""
    n = len((model.config if isinstance(model, LeNet) else model).dense_widths)
    return f"fc{n}_act" if n else "flatten"


@torch.inference_mode()
def hidden_features(model: LeNet, images: torch.Tensor, batch_size: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """(last hidden layer's output (N, D) float32, logits (N, classes) float32) of uint8 images
    (N, 28, 28), batch by batch so memory stays bounded whatever N is."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    stop = hidden_layer(model)
    feats, logits = [], []
    try:
        for i in range(0, len(images), batch_size):
            h = as_input(images[i:i + batch_size].to(device))
            for name, layer in model.net.named_children():
                h = layer(h)
                if name == stop:
                    feats.append(h.float().cpu())
            logits.append(h.float().cpu())
    finally:
        model.train(was_training)
    if not feats:
        return np.zeros((0, 0), np.float32), np.zeros((0, model.config.num_classes), np.float32)
    return torch.cat(feats).numpy(), torch.cat(logits).numpy()


def fingerprint(model: LeNet) -> str:
    """A short hash of the architecture and every weight: the same model, the same string."""
    h = hashlib.sha256(repr(sorted(model.config.to_dict().items())).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


class _Progress(io.TextIOBase):
    """A file for tqdm (UMAP reports its layout epochs through tqdm): each 'n/total' it writes
    becomes a fraction passed to `report`."""

    def __init__(self, report):
        self.report = report

    def write(self, s):
        for n, total in re.findall(r"(\d+)/(\d+)", s):
            if int(total):
                self.report(int(n) / int(total))
        return len(s)


def pca(x: np.ndarray, basis: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x projected on its first two principal components, (mean, components) to project other
    rows alike). Given `basis`, projects with it instead of fitting one (the map over training:
    every epoch in the last epoch's axes). Plain numpy: an 84x84 eigen-decomposition takes
    microseconds, and importing scikit-learn for it would cost the first map a second or more."""
    x = np.asarray(x, dtype=np.float64)
    if basis is None:
        mean = x.mean(0)
        _, vectors = np.linalg.eigh(np.cov(x - mean, rowvar=False))
        components = vectors[:, ::-1][:, :2].T
        # An eigenvector's sign is arbitrary: fix it, so the same features always give the same map.
        components *= np.where(components[np.arange(2), np.abs(components).argmax(1)] < 0, -1, 1)[:, None]
        basis = np.concatenate([mean[None], components])
    return ((x - basis[0]) @ basis[1:].T).astype(np.float32), basis


def project(features: np.ndarray, method: str = "PCA", seed: int = 0, progress=None) -> np.ndarray:
    """(N, 2) float32 coordinates of (N, D) features. `progress(fraction)` is called as it goes
    (UMAP: its layout epochs; t-SNE: its iterations). PCA is deterministic; UMAP and t-SNE are
    fixed by `seed` and use one thread each, leaving the machine's other core to other users."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    report = progress or (lambda f: None)
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}: choose one of {', '.join(METHODS)}")
    if len(x) < 3 or x.shape[1] < 2:
        raise ValueError(f"a map needs at least 3 images of at least 2 values each, got {x.shape}")
    if method == "PCA":
        out = pca(x)[0]
    elif method == "UMAP":
        import umap

        reducer = umap.UMAP(n_components=2, random_state=seed, n_jobs=1, n_neighbors=min(15, len(x) - 1),
                            tqdm_kwds={"disable": False, "file": _Progress(report), "bar_format": "{n}/{total}\n",
                                       "mininterval": 0.5})
        out = reducer.fit_transform(x)
    else:
        from openTSNE import TSNE

        every, total = 25, 250 + 500   # openTSNE's default early-exaggeration and main iterations
        done = [0]

        def tick(iteration, error, embedding):
            done[0] += every
            report(min(1.0, done[0] / total))
            return False

        out = np.asarray(TSNE(n_components=2, perplexity=min(30, (len(x) - 1) / 3), random_state=seed, n_jobs=1,
                              callbacks=tick, callbacks_every_iters=every).fit(x))
    report(1.0)
    return np.asarray(out, dtype=np.float32)


@dataclass
class FeatureMap:
    """A model's map of a set of images: one 2-D point per image, with its true and predicted class."""

    coords: np.ndarray        # (N, 2) float32
    labels: np.ndarray        # (N,) int64, the true classes
    predictions: np.ndarray   # (N,) int64
    confidence: np.ndarray    # (N,) float32, the probability of the prediction
    method: str
    layer: str                # which layer's output was projected, e.g. "fc2_act"
    dims: int                 # how many values that layer has per image
    fingerprint: str          # the model's (see fingerprint())
    dataset: str
    seconds: float            # how long it took to make (not to read back)

    @property
    def mistakes(self) -> np.ndarray:
        return self.predictions != self.labels


def feature_map(model: LeNet, images: torch.Tensor, labels: torch.Tensor, method: str = "PCA", dataset: str = "",
                seed: int = 0, progress=None) -> FeatureMap:
    """The map of `images` (uint8 (N, 28, 28)) as `model` sees them: its last hidden layer's
    output projected with `method`. progress(fraction) covers the whole of it."""
    t0 = time.perf_counter()
    report = progress or (lambda f: None)
    with one_thread() if method != "PCA" else contextlib.nullcontext():   # a background job shares the CPU with pages
        feats, logits = hidden_features(model, images)
    report(0.05)
    coords = project(feats, method, seed, lambda f: report(0.05 + 0.95 * f))
    probs = torch.softmax(torch.from_numpy(logits), 1)
    conf, pred = probs.max(1)
    return FeatureMap(coords, labels.cpu().numpy().astype(np.int64), pred.numpy().astype(np.int64),
                      conf.numpy().astype(np.float32), method, hidden_layer(model), int(feats.shape[1]),
                      fingerprint(model), dataset, time.perf_counter() - t0)


# -- the cache ---------------------------------------------------------------------------------

def cache_path(folder: str | os.PathLike, method: str, dataset: str) -> Path:
    """Where a model's map of a data set's test images is kept: in its run folder (or, for a
    shipped model, a cache folder of its own)."""
    slug = {"PCA": "pca", "UMAP": "umap", "t-SNE": "tsne"}[method]
    return Path(folder) / f"feature-map-{dataset}-{slug}.npz"


def save_map(path: str | os.PathLike, m: FeatureMap) -> Path:
    buf = io.BytesIO()
    np.savez(buf, version=np.int64(CACHE_VERSION), coords=m.coords, labels=m.labels, predictions=m.predictions,
             confidence=m.confidence, method=np.str_(m.method), layer=np.str_(m.layer), dims=np.int64(m.dims),
             fingerprint=np.str_(m.fingerprint), dataset=np.str_(m.dataset), seconds=np.float64(m.seconds))
    atomic_write(Path(path), lambda f: f.write(buf.getbuffer()))
    return Path(path)


def load_map(path: str | os.PathLike, fingerprint_: str | None = None) -> FeatureMap | None:
    """The cached map at `path`, or None where there is none, it is damaged or from another
    version, or (given `fingerprint_`) it was made by other weights. Never raises for the file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION:
                return None
            m = FeatureMap(z["coords"].astype(np.float32), z["labels"].astype(np.int64),
                           z["predictions"].astype(np.int64), z["confidence"].astype(np.float32), str(z["method"]),
                           str(z["layer"]), int(z["dims"]), str(z["fingerprint"]), str(z["dataset"]),
                           float(z["seconds"]))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return None
    n = len(m.labels)
    if m.coords.shape != (n, 2) or len(m.predictions) != n or len(m.confidence) != n or not np.isfinite(m.coords).all():
        return None
    if fingerprint_ is not None and m.fingerprint != fingerprint_:
        return None
    return m


def cached_feature_map(folder: str | os.PathLike, model: LeNet, images: torch.Tensor, labels: torch.Tensor,
                       method: str = "PCA", dataset: str = "", progress=None) -> tuple[FeatureMap, bool]:
    """(map, whether it came from the cache): read from `folder` when these weights made it,
    else computed and written there (a folder that cannot be written only loses the cache)."""
    path = cache_path(folder, method, dataset)
    cached = load_map(path, fingerprint(model))
    if cached is not None and len(cached.labels) == len(labels):
        return cached, True
    m = feature_map(model, images, labels, method, dataset, progress=progress)
    try:
        save_map(path, m)
    except OSError:
        pass
    return m, False
