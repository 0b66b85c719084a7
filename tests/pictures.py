"""Test pictures: one coloured rectangle on a plain ground, encoded as an image file.

A stand-in for a product on a studio background: the rectangle is what a model should keep, the
ground what it should clear. Tests choose the size, the rectangle and the colours (a colour that
varies gives every picture its own bytes, and so its own ETag).
"""

from __future__ import annotations

import io

from PIL import Image

RGB = tuple[int, int, int]


def square(size: tuple[int, int], box: tuple[int, int, int, int], colour: RGB = (220, 20, 20),
           *, ground: RGB = (255, 255, 255), fmt: str = "PNG") -> bytes:
    """``size`` is (width, height); ``box`` is (left, top, right, bottom), as PIL takes them."""
    img = Image.new("RGB", size, ground)
    img.paste(colour, box)
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()
