"""The models the browser runs: each picked model as ONNX (lenet_core/export.py), made once per
version of its checkpoint and kept in memory, and onnxruntime-web's files, shipped in static/ort/.

The Draw page's canvas fetches both from the app's own routes (server.py), so a classroom with no
network still gets the live prediction."""
from __future__ import annotations

import functools
import gzip
import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from lenet_core.checkpoint import CheckpointError, atomic_write
from lenet_core.data import cache_dir
from lenet_core.export import ExportError, checkpoint_sha256, source_bytes

ORT_DIR = Path(__file__).parent / "static" / "ort"
# What the page needs of onnxruntime-web 1.30 (CPU, WebAssembly): the script, the module it
# imports, the wasm binary (stored gzipped: 3.7 MB in place of 14.2).
ORT_FILES = {"ort.wasm.min.js": "text/javascript", "ort-wasm-simd-threaded.mjs": "text/javascript",
             "ort-wasm-simd-threaded.wasm": "application/wasm"}

_lock = threading.Lock()  # one export at a time: the exporter is not made for threads, and it is CPU
_warming = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lenet-onnx")


EXPORT_FORMAT = "1"  # part of the disk cache's key: change it when export.py's graph changes


def _cached(path: str, modified: int) -> Path:
    key = hashlib.sha1(f"{EXPORT_FORMAT}:{path}:{modified}".encode()).hexdigest()[:20]
    return cache_dir() / "onnx" / f"{key}.onnx"


def _readable(path: Path, digest: str) -> bytes | None:
    """The ONNX file at `path` if it is sound and made from the checkpoint with this digest."""
    import onnx

    try:
        data = path.read_bytes()
        props = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    except Exception:  # missing or damaged: made again
        return None
    return data if props.get("checkpoint_sha256") == digest else None


@functools.lru_cache(maxsize=16)
def _export(path: str, modified: int) -> bytes:
    """Made once per checkpoint version and kept on disk: the first export in a process takes 8 s
    (the exporter's own start; 25 s on a busy 2-core machine), later ones 1-2 s, a kept file
    milliseconds. The shipped models ship theirs (models/*/model.onnx). One at a time, so a second
    request for the same model waits for the first and reads what it kept."""
    with _lock:
        digest = checkpoint_sha256(path)
        kept = _cached(path, modified)
        for candidate in (Path(path) / "model.onnx", kept):
            data = _readable(candidate, digest)
            if data is not None:
                return data
        data = source_bytes(path)
        try:
            atomic_write(kept, lambda f: f.write(data))
        except OSError:
            pass  # a read-only cache only costs the next server the export
        return data


def checkpoint_version(folder: Path) -> int | None:
    try:
        return os.stat(folder / "checkpoint.pt").st_mtime_ns
    except OSError:
        return None


def onnx_for(folder: Path) -> bytes:
    """The ONNX file of the model in a run (or shipped model) folder; CheckpointError or
    ExportError, with the reason, where there is none."""
    version = checkpoint_version(folder)
    if version is None:
        raise CheckpointError(f"{folder.name} has no checkpoint")
    return _export(str(folder.resolve()), version)


def onnx_download(folder: Path) -> bytes:
    """The ONNX file for a download button: made when the button is clicked. A checkpoint that
    cannot be read gives a small text file that says why, rather than a page error."""
    try:
        return onnx_for(folder)
    except (CheckpointError, ExportError, OSError) as e:
        return f"LeNet Lab could not export this run's model: {e}\n".encode()


def warm(folder: Path) -> Future:
    """Start making the ONNX file now (about 2 s, 7 s for the first in a process), while the
    browser loads the runtime, so the canvas's request finds it ready."""
    def make():
        try:
            onnx_for(folder)
        except (CheckpointError, ExportError, OSError):
            pass  # the route says why, when the browser asks
    return _warming.submit(make)


@functools.lru_cache(maxsize=len(ORT_FILES))
def ort_file(name: str) -> tuple[bytes, bytes | None]:
    """(gzipped bytes, plain bytes or None): the wasm binary is kept gzipped and sent as it is;
    a browser that takes no gzip (none in use) gets it unpacked."""
    if name.endswith(".wasm"):
        return (ORT_DIR / f"{name}.gz").read_bytes(), None
    plain = (ORT_DIR / name).read_bytes()
    return gzip.compress(plain, compresslevel=9, mtime=0), plain
