"""Turn a drawing into the 28x28 image an MNIST model expects, made the way MNIST made its digits."""
from __future__ import annotations

import base64
import binascii
import io
import math

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

SIZE = 28
BOX = 20  # MNIST normalised each digit to fit a 20x20 box inside the 28x28 field
INK_THRESHOLD = 0.1  # ink below this is antialiasing fringe or noise, not a stroke
# A symmetric stroke's centre of mass lies on a half pixel, give or take an error in the last bits
# that depends on the order of the additions (numpy's here, the browser's on the Draw canvas, see
# lenet_app/static/draw_preprocess.js): such a centre is rounded up, wherever it is computed.
HALF_UP = 0.5 + 1e-4


def ink_from_rgba(rgba: np.ndarray) -> np.ndarray:
    """Ink intensity in [0, 1] per pixel, whatever colour the canvas background is."""
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx4 (or HxWx3) image array, got shape {rgba.shape}")
    rgb = rgba[..., :3].astype(np.float32) / 255.0
    alpha = rgba[..., 3].astype(np.float32) / 255.0 if rgba.shape[2] == 4 else np.ones(rgba.shape[:2], np.float32)
    luminance = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    ink = luminance * alpha
    # Dark strokes on a transparent canvas have no luminance; their alpha is the ink.
    # Only when some pixels are transparent, so a blank opaque black canvas stays blank.
    if ink.max() < INK_THRESHOLD and alpha.min() < INK_THRESHOLD:
        ink = alpha
    return ink


def digit_from_rgba(rgba: np.ndarray) -> np.ndarray | None:
    """28x28 float32 image in [0, 1] (ink = 1) from a canvas drawing, or None if nothing is drawn."""
    ink = ink_from_rgba(rgba)
    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    if rows.size == 0:
        return None
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    h, w = crop.shape
    scale = BOX / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    patch = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((new_w, new_h), Image.Resampling.LANCZOS))
    # Lanczos rings slightly outside [0, 1]; a faint pen should still give full-strength ink like MNIST's.
    patch = np.clip(patch, 0.0, None)
    patch = patch / patch.max()

    # Like MNIST, move the centre of mass (not the box centre) to the middle of the field.
    ys, xs = np.indices(patch.shape)
    total = patch.sum()
    cy, cx = (ys * patch).sum() / total, (xs * patch).sum() / total
    out = np.zeros((SIZE, SIZE), np.float32)
    _paste(out, patch, top=math.floor(SIZE / 2 - cy + HALF_UP), left=math.floor(SIZE / 2 - cx + HALF_UP))
    return out


def _paste(dst: np.ndarray, src: np.ndarray, top: int, left: int) -> None:
    # A lopsided digit can put its box partly outside the field; clip rather than fail.
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + src.shape[0], dst.shape[0]), min(left + src.shape[1], dst.shape[1])
    if y0 < y1 and x0 < x1:
        dst[y0:y1, x0:x1] = src[y0 - top : y1 - top, x0 - left : x1 - left]


def png_bytes_to_rgba(data: bytes) -> np.ndarray:
    """Decode image bytes (PNG or any format PIL reads) into an HxWx4 uint8 array."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGBA"))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"not a readable image ({len(data)} bytes): {e}") from e


def digit_from_png_bytes(data: bytes) -> np.ndarray | None:
    """digit_from_rgba for an encoded image."""
    return digit_from_rgba(png_bytes_to_rgba(data))


def png_data_url_to_rgba(url: str) -> np.ndarray:
    """HxWx4 uint8 array from a "data:image/png;base64,..." URL."""
    header, sep, payload = url.partition(",")
    if not sep or not header.startswith("data:image/") or not header.endswith(";base64"):
        raise ValueError(f"expected a base64 image data URL like 'data:image/png;base64,...', got {url[:40]!r}")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"image data URL has invalid base64: {e}") from e
    return png_bytes_to_rgba(data)


def rgba_to_png_data_url(rgba: np.ndarray) -> str:
    """Inverse of png_data_url_to_rgba: how tests hand a drawing to the app."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgba, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_to_tensor(img28: np.ndarray) -> torch.Tensor:
    """A (1, 1, 28, 28) float32 batch of one, the shape the model's forward takes."""
    img28 = np.asarray(img28, dtype=np.float32)
    if img28.shape != (SIZE, SIZE):
        raise ValueError(f"expected a {SIZE}x{SIZE} image, got shape {img28.shape}")
    return torch.from_numpy(img28.copy()).reshape(1, 1, SIZE, SIZE)
