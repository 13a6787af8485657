"""Small learnable stand-ins for the data sets, written as IDX files: tests train on them in seconds."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from lenet_core.data import SPLIT_FILES


def synthetic_idx(folder: str | os.PathLike, n_train: int = 512, n_test: int = 256, seed: int = 0,
                  compress: bool = True) -> Path:
    """Write a small, learnable 10-class data set as IDX files (for tests and demos
    without data): each class is a bright bar at its own place and angle, plus noise."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)

    def make(n):
        labels = g.integers(0, 10, n).astype(np.uint8)
        images = g.integers(0, 60, (n, 28, 28)).astype(np.float32)
        for i, y in enumerate(labels):
            r, c = 4 + 2 * (y % 5) + g.integers(-1, 2), 4 + 10 * (y // 5) + g.integers(-1, 2)
            if y % 2:
                images[i, r:r + 3, c:c + 10] = 255
            else:
                images[i, r:r + 10, c:c + 3] = 255
        return images.astype(np.uint8), labels

    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = make(n)
        for stem, arr in zip(SPLIT_FILES[split], (images, labels)):
            header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
            payload = header + arr.tobytes()
            path = folder / (stem + (".gz" if compress else ""))
            path.write_bytes(gzip.compress(payload, compresslevel=1) if compress else payload)
    return folder
