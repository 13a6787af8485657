"""The app's favicon, drawn here: a Material icon as page_icon makes the browser fetch it
from Google's font servers, which fails in an offline lecture room."""
from __future__ import annotations

import functools

from PIL import Image, ImageDraw


@functools.cache
def favicon() -> Image.Image:
    """A 4x4 'feature map' of blue squares on white, 64x64 pixels."""
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, 63, 63), radius=12, fill=(255, 255, 255, 255), outline=(0, 104, 201, 255), width=3)
    levels = [0.2, 0.6, 1.0, 0.4, 0.8, 1.0, 0.5, 0.2, 0.3, 0.9, 0.7, 1.0, 0.1, 0.4, 0.9, 0.6]
    for i, level in enumerate(levels):
        x, y = 8 + 12 * (i % 4), 8 + 12 * (i // 4)
        shade = tuple(int(255 - (255 - c) * level) for c in (0, 104, 201))
        draw.rectangle((x, y, x + 10, y + 10), fill=(*shade, 255))
    return image
