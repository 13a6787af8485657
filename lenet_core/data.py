"""Fashion-MNIST and MNIST as whole uint8 tensors, found locally or downloaded."""
from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(i) for i in range(10))

# name -> (folder name under a data dir, torchvision class name, class names)
DATASETS = {
    "fashion-mnist": ("fashion-mnist", "FashionMNIST", FASHION_CLASSES),
    "mnist": ("mnist", "MNIST", DIGIT_CLASSES),
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Debian's dataset-fashion-mnist package installs the four files here.
SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}


class DataUnavailableError(RuntimeError):
    """No copy of a data set could be found or downloaded; the message says what to do."""


@dataclass
class ImageData:
    """A data set held as whole tensors: images uint8 (N, 28, 28), labels int64 (N,)."""

    name: str
    classes: tuple[str, ...]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str

    def to(self, device) -> "ImageData":
        return ImageData(self.name, self.classes, self.train_images.to(device), self.train_labels.to(device),
                         self.test_images.to(device), self.test_labels.to(device), self.source)

    def test_indices_of(self, label: int) -> torch.Tensor:
        return torch.nonzero(self.test_labels == label).flatten()


def cache_dir() -> Path:
    """The project's data cache (torchvision's layout), overridable for tests."""
    if os.environ.get("LENET_CACHE_DIR"):
        return Path(os.environ["LENET_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "lenet-lab"


def check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown data set '{name}': choose one of {', '.join(DATASETS)}")


def _idx_path(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _damaged(path: Path, why: str) -> DataUnavailableError:
    return DataUnavailableError(f"{path} is damaged: {why}. Replace it with a good copy of the file, or delete it "
                                "and the data set is looked for in the next place (and downloaded if need be).")


def _read_idx(path: Path) -> torch.Tensor:
    """Parse an IDX file (gzipped or not) of unsigned bytes: images or labels."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise _damaged(path, f"it cannot be read or unpacked ({e})") from None
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 3:
        raise _damaged(path, "it is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=min(4 + 4 * ndim, len(raw)))
    if body.size != int(np.prod(dims)):
        raise _damaged(path, f"it is truncated, with {body.size} bytes of data where its header says {int(np.prod(dims))}")
    return torch.from_numpy(body.reshape(dims).copy())


def _folder_complete(folder: Path) -> bool:
    return all(_idx_path(folder, stem) for pair in SPLIT_FILES.values() for stem in pair)


def _load_folder(name: str, folder: Path) -> ImageData:
    classes = DATASETS[name][2]
    tensors = {}
    for split, (img_stem, lbl_stem) in SPLIT_FILES.items():
        images, labels = _read_idx(_idx_path(folder, img_stem)), _read_idx(_idx_path(folder, lbl_stem))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataUnavailableError(f"{folder}: {split} images {tuple(images.shape)} do not match labels {tuple(labels.shape)}")
        if tuple(images.shape[1:]) != (28, 28):
            raise DataUnavailableError(f"{folder}: {split} images are {images.shape[1]}x{images.shape[2]}, "
                                       f"not the 28x28 of {name}; is this the right folder?")
        if len(labels) and int(labels.max()) >= len(classes):
            raise DataUnavailableError(f"{folder}: {split} labels go up to {int(labels.max())}, "
                                       f"but {name} has {len(classes)} classes")
        tensors[split] = (images, labels.long())
    return ImageData(name, classes, *tensors["train"], *tensors["test"], source=str(folder))


def _load_torchvision(name: str, root: Path, download: bool) -> ImageData:
    import torchvision  # imported late: it costs a second and is only needed here

    cls = getattr(torchvision.datasets, DATASETS[name][1])
    train = cls(str(root), train=True, download=download)
    test = cls(str(root), train=False, download=download)
    return ImageData(name, DATASETS[name][2], train.data, train.targets.long(), test.data, test.targets.long(),
                     source=str(Path(root) / DATASETS[name][1]))


def candidate_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders that may hold the four IDX files, in the order they are tried."""
    check_name(name)
    folder = DATASETS[name][0]
    dirs = []
    user = data_dir or os.environ.get("LENET_DATA_DIR")
    if user:
        dirs.append(Path(user) / folder)
    dirs.append(cache_dir() / DATASETS[name][1] / "raw")
    if name in SYSTEM_DIRS:
        dirs.append(SYSTEM_DIRS[name])
    return dirs


def find_local(name: str, data_dir=None) -> Path | None:
    """The first folder with a complete local copy, or None."""
    return next((d for d in candidate_dirs(name, data_dir) if _folder_complete(d)), None)


def _download(name: str) -> ImageData:
    return _load_torchvision(name, cache_dir(), download=True)


def _reason(e: Exception) -> str:
    """The most telling line of a download error (torchvision puts the cause last)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(e).__name__)[:200]


def load_dataset(name: str, data_dir=None, download: bool = True) -> ImageData:
    """Load a data set from the first place that has it: the user's folder
    (argument or LENET_DATA_DIR), the project's cache, Debian's system copy,
    then a torchvision download into the cache. LENET_OFFLINE=1 switches the download off."""
    download = download and os.environ.get("LENET_OFFLINE", "") in ("", "0")
    tried = candidate_dirs(name, data_dir)
    local = find_local(name, data_dir)
    if local is not None:
        return _load_folder(name, local)
    problem = "downloading is switched off"
    if download:
        try:
            return _download(name)
        except Exception as e:  # urllib, socket and torchvision's RuntimeError all mean "no download"
            problem = f"the download failed ({_reason(e)})"
    folder = DATASETS[name][0]
    lines = [f"The {name} data set is not available: no local copy was found and {problem}.",
             "Looked for the four IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
             "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in:"]
    lines += [f"  - {d}" for d in tried]
    lines.append("To fix it, do one of these:")
    lines.append(f"  - put the four files in DIR/{folder}/ and set LENET_DATA_DIR=DIR (or pass --data-dir DIR);")
    if name == "fashion-mnist":
        lines.append("  - install Debian's copy: sudo apt-get install dataset-fashion-mnist;")
    lines.append("  - connect to the internet and try again: torchvision downloads it into "
                 f"{cache_dir()} once.")
    raise DataUnavailableError("\n".join(lines))
