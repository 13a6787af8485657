"""Where data comes from, in order, and what the user is told when it is nowhere."""
import gzip

import numpy as np
import pytest
import torch

from lenet_core import data as D
from synthetic import synthetic_idx


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No user dir, an empty cache, no Debian copy, and a download that records it was asked."""
    calls = []
    monkeypatch.delenv("LENET_DATA_DIR", raising=False)
    monkeypatch.delenv("LENET_OFFLINE", raising=False)
    monkeypatch.setenv("LENET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(D, "SYSTEM_DIRS", {"fashion-mnist": tmp_path / "debian"})

    def offline(name):
        calls.append(name)
        raise RuntimeError("Error downloading x:\nTried http://example, got:\n<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(D, "_download", offline)
    return tmp_path, calls


def test_reads_gzipped_and_plain_idx(tmp_path):
    synthetic_idx(tmp_path / "gz" / "mnist", n_train=40, n_test=20, compress=True)
    synthetic_idx(tmp_path / "plain" / "mnist", n_train=40, n_test=20, compress=False)
    a = D.load_dataset("mnist", tmp_path / "gz")
    b = D.load_dataset("mnist", tmp_path / "plain")
    assert a.train_images.shape == (40, 28, 28) and a.train_images.dtype == torch.uint8
    assert a.test_labels.shape == (20,) and a.test_labels.dtype == torch.int64
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert a.classes == D.DIGIT_CLASSES


def test_lookup_order(isolated):
    tmp, calls = isolated
    debian = synthetic_idx(tmp / "debian", n_train=10, n_test=10, seed=1)
    assert D.load_dataset("fashion-mnist").source == str(debian)          # Debian's copy when nothing else
    cache = synthetic_idx(tmp / "cache" / "FashionMNIST" / "raw", n_train=11, n_test=10, seed=2)
    assert D.load_dataset("fashion-mnist").source == str(cache)           # the cache beats Debian's
    user = synthetic_idx(tmp / "user" / "fashion-mnist", n_train=12, n_test=10, seed=3)
    assert D.load_dataset("fashion-mnist", tmp / "user").source == str(user)  # an argument beats all
    env = synthetic_idx(tmp / "env" / "fashion-mnist", n_train=13, n_test=10, seed=4)
    import os
    os.environ["LENET_DATA_DIR"] = str(tmp / "env")
    try:
        got = D.load_dataset("fashion-mnist")
    finally:
        del os.environ["LENET_DATA_DIR"]
    assert got.source == str(env) and len(got.train_images) == 13
    assert calls == []  # a local copy never triggers a download


def test_download_is_last_and_offline_error_says_what_to_do(isolated):
    tmp, calls = isolated
    with pytest.raises(D.DataUnavailableError) as info:
        D.load_dataset("fashion-mnist", tmp / "user")
    msg = str(info.value)
    assert calls == ["fashion-mnist"]
    for path in (tmp / "user" / "fashion-mnist", tmp / "cache" / "FashionMNIST" / "raw", tmp / "debian"):
        assert str(path) in msg
    assert "Temporary failure in name resolution" in msg
    assert "LENET_DATA_DIR" in msg and "apt-get install dataset-fashion-mnist" in msg


def test_offline_switch_skips_the_download(isolated, monkeypatch):
    tmp, calls = isolated
    monkeypatch.setenv("LENET_OFFLINE", "1")
    with pytest.raises(D.DataUnavailableError, match="switched off"):
        D.load_dataset("mnist")
    assert calls == []


def test_an_incomplete_folder_is_passed_over(isolated):
    tmp, calls = isolated
    folder = synthetic_idx(tmp / "user" / "mnist", n_train=10, n_test=10)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(D.DataUnavailableError):
        D.load_dataset("mnist", tmp / "user")


def test_a_corrupt_file_is_reported(tmp_path):
    folder = synthetic_idx(tmp_path / "mnist", n_train=10, n_test=10)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 20))
    with pytest.raises(D.DataUnavailableError, match="truncated"):
        D.load_dataset("mnist", tmp_path)


def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape) + arr.tobytes()


@pytest.mark.parametrize("stem, content, says", [
    ("train-images-idx3-ubyte.gz", lambda good: good[: len(good) // 2], "cannot be read or unpacked"),
    ("train-images-idx3-ubyte.gz", lambda good: b"plain bytes, not gzip", "cannot be read or unpacked"),
    ("train-labels-idx1-ubyte.gz", lambda good: gzip.compress(b"<html>not found</html>"), "not an IDX file"),
    ("train-images-idx3-ubyte.gz", lambda good: gzip.compress(_idx(np.zeros((10, 32, 32), np.uint8))), "32x32"),
    ("train-labels-idx1-ubyte.gz", lambda good: gzip.compress(_idx(np.full(10, 12, np.uint8))), "go up to 12"),
])
def test_a_damaged_or_wrong_file_is_named_with_what_to_do(tmp_path, stem, content, says):
    folder = synthetic_idx(tmp_path / "mnist", n_train=10, n_test=10)
    path = folder / stem
    path.write_bytes(content(path.read_bytes()))
    with pytest.raises(D.DataUnavailableError, match=says) as refused:
        D.load_dataset("mnist", tmp_path, download=False)
    assert str(path) in str(refused.value) or str(folder) in str(refused.value)


def test_unknown_data_set_name():
    with pytest.raises(ValueError, match="fashion-mnist, mnist"):
        D.load_dataset("cifar10")
