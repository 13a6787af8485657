"""What excites each channel: for every conv channel (and, on request, every dense unit) the test
images that make it respond most, ranked by the channel's largest response anywhere in its map.

One pass over the test set in batches, keeping a running top k per channel, so memory stays
bounded whatever the number of images; computed once per model and cached as an .npz beside it
(a damaged or stale cache file reads as missing)."""
from __future__ import annotations

import io
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write
from .feature_map import fingerprint
from .model import LeNet
from .train import as_input

TOP_K = 9
CACHE_VERSION = 1


def unit_layers(model: LeNet, dense: bool = False) -> list[str]:
    """The layers whose units are ranked: each conv layer's post-activation output, and with
    `dense` each hidden dense layer's."""
    names = [f"conv{i}_act" for i in range(1, len(model.config.conv_channels) + 1)]
    if dense:
        names += [f"fc{i}_act" for i in range(1, len(model.config.dense_widths) + 1)]
    return names


@dataclass
class TopImages:
    """layer -> (values (units, k) float32, test indices (units, k) int64), best first."""

    layers: dict[str, tuple[np.ndarray, np.ndarray]]
    k: int
    count: int          # images looked at
    fingerprint: str
    dataset: str
    seconds: float


@torch.inference_mode()
def top_images(model: LeNet, images: torch.Tensor, k: int = TOP_K, dense: bool = False, batch_size: int = 1000,
               dataset: str = "", progress=None) -> TopImages:
    """For each unit of unit_layers(model, dense), the k images of `images` (uint8 (N, 28, 28))
    with the largest response (a conv channel's maximum over its map), best first. Ties go to
    the image earlier in the set."""
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    wanted = unit_layers(model, dense)
    last = wanted[-1]
    k = max(1, min(k, len(images)))
    best: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    try:
        for start in range(0, len(images), batch_size):
            h = as_input(images[start:start + batch_size].to(device))
            for name, layer in model.net.named_children():
                h = layer(h)
                if name in wanted:
                    score = (h.flatten(2).amax(2) if h.dim() == 4 else h).float().cpu()   # (n, units)
                    idx = torch.arange(start, start + len(score)).expand(score.shape[1], -1).T
                    if name in best:
                        v0, i0 = best[name]
                        score, idx = torch.cat([v0, score]), torch.cat([i0, idx])
                    # topk is not stable; a stable sort keeps earlier images first among equals.
                    order = torch.sort(score, dim=0, descending=True, stable=True).indices[:k]
                    best[name] = score.gather(0, order), idx.gather(0, order)
                if name == last:
                    break
            if progress:
                progress(min(1.0, (start + batch_size) / len(images)))
    finally:
        model.train(was_training)
    layers = {name: (v.T.contiguous().numpy(), i.T.contiguous().numpy().astype(np.int64))
              for name, (v, i) in best.items()}
    return TopImages(layers, k, len(images), fingerprint(model), dataset, time.perf_counter() - t0)


# -- the cache ---------------------------------------------------------------------------------

def cache_path(folder: str | os.PathLike, dataset: str, dense: bool = False) -> Path:
    return Path(folder) / f"top-images-{dataset}{'-dense' if dense else ''}.npz"


def save_top(path: str | os.PathLike, t: TopImages) -> Path:
    arrays = {}
    for name, (v, i) in t.layers.items():
        arrays[f"values/{name}"], arrays[f"indices/{name}"] = v, i
    buf = io.BytesIO()
    np.savez(buf, version=np.int64(CACHE_VERSION), layers=np.array(list(t.layers), dtype=np.str_),
             k=np.int64(t.k), count=np.int64(t.count), fingerprint=np.str_(t.fingerprint),
             dataset=np.str_(t.dataset), seconds=np.float64(t.seconds), **arrays)
    atomic_write(Path(path), lambda f: f.write(buf.getbuffer()))
    return Path(path)


def load_top(path: str | os.PathLike, fingerprint_: str | None = None) -> TopImages | None:
    """The cached top images at `path`; None where missing, damaged, of another version or
    (given `fingerprint_`) of other weights."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION:
                return None
            count = int(z["count"])
            layers = {}
            for name in map(str, z["layers"]):
                v, i = z[f"values/{name}"].astype(np.float32), z[f"indices/{name}"].astype(np.int64)
                if v.shape != i.shape or v.ndim != 2 or (i.size and (i.min() < 0 or i.max() >= count)):
                    return None
                layers[name] = (v, i)
            t = TopImages(layers, int(z["k"]), count, str(z["fingerprint"]), str(z["dataset"]), float(z["seconds"]))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return None
    if fingerprint_ is not None and t.fingerprint != fingerprint_:
        return None
    return t


def cached_top_images(folder: str | os.PathLike, model: LeNet, images: torch.Tensor, dataset: str = "",
                      dense: bool = False, k: int = TOP_K, progress=None) -> tuple[TopImages, bool]:
    """(top images, whether they came from the cache in `folder`)."""
    path = cache_path(folder, dataset, dense)
    cached = load_top(path, fingerprint(model))
    if cached is not None and cached.count == len(images) and cached.k >= min(k, len(images)):
        return cached, True
    t = top_images(model, images, k, dense, dataset=dataset, progress=progress)
    try:
        save_top(path, t)
    except OSError:
        pass
    return t, False
