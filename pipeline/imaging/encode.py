"""Encode a composite to bytes: lossless PNG (the default), lossless WebP, or JPEG.

Pure: pixels in, bytes out. Choices, CPU time per 2048x2048 image. The first PNG rows are
``bench/stages.py``'s (2026-12-07, 12 product photos upscaled and cut out by u2netp; it prints
these two side by side on every run); the imagecodecs row is from a one-off survey on 4 of
those photos under a synthetic disc alpha (fpng 10 ms, Pillow 121 ms there); the rest from
rembg's 13 example cut-outs upscaled to 2048x2048, an earlier survey on a loaded box:

    png, fpng                         28 ms   2.61 MB   <- ours (RGB, RGBA)
    png, Pillow level 1, Z_RLE       155 ms   2.20 MB   ours until issue 16
    png, imagecodecs level 1, Z_RLE,  62 ms   2.32 MB   (survey: 2x fpng's time there)
        SUB filter
    png, Pillow's default (level 6)  751 ms   1.13 MB   what rembg writes
    webp lossless, method 0, q 0     255 ms   1.44 MB   <- ours
    webp lossless, method 0, q 100   980 ms   0.86 MB
    jpeg q90 (flattened)              32 ms   0.20 MB

* **PNG**, RGB and RGBA: ``fpng`` (Rich Geldreich's fpng, through the ``fpng`` PyPI binding):
  one fixed filter and a deflate specialised for it, 5x to 12x faster than zlib at level 1 for
  files about 18% larger; any PNG reader decodes them back exactly (tested). At catalog scale the
  CPU per image is the bill and the bytes are not, so the faster codec wins.
  **L** (alpha-only output, the layers mask) is not a mode fpng writes: Pillow, zlib level 1 with
  the ``Z_RLE`` strategy. Compose has set RGB to 0 under fully transparent pixels, which turns
  the background into runs of zeros for either encoder.
* **WebP** is lossless (``lossless=True``) at ``method=0, quality=0``: the least effort (for
  lossless WebP ``quality`` is effort, not fidelity). More effort halves the file at 4-5x the
  time; raise ``WEBP_METHOD`` / ``WEBP_EFFORT`` if bytes matter more than CPU. Lossless WebP
  keeps every visible pixel exact; under fully transparent pixels it may change RGB
  (``exact=False``), which nobody can see.
* **JPEG** at quality 90 with Pillow's default 4:2:0 chroma subsampling, from RGB only (the
  options give JPEG a background colour, so the composite is flattened).

Pixels beyond a format's size limit (WebP 16383, JPEG 65535, fpng 2**24 per side) raise
``InvalidOptions`` naming the limit: the options asked for something the format cannot hold.
The encoders' own errors are translated to the same leaf.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import fpng
import numpy as np
import numpy.typing as npt
from PIL import Image

from pipeline.errors import InvalidOptions
from pipeline.imaging.compose import Composite
from pipeline.options import Format

PNG_LEVEL = 1
Z_RLE = 3  # zlib's strategy constant; Pillow passes it through as compress_type
WEBP_METHOD = 0
WEBP_EFFORT = 0
JPEG_QUALITY = 90
MAX_SIDE: Mapping[Format, int] = {"png": 2**24, "webp": 16383, "jpg": 65535}

_SAVE: Mapping[Format, tuple[str, dict[str, Any]]] = {
    "png": ("PNG", {"compress_level": PNG_LEVEL, "compress_type": Z_RLE}),
    "webp": ("WEBP", {"lossless": True, "method": WEBP_METHOD, "quality": WEBP_EFFORT}),
    "jpg": ("JPEG", {"quality": JPEG_QUALITY}),
}


def encode(composite: Composite, fmt: Format) -> bytes:
    """The composite as ``fmt`` bytes; its content type is ``OutputOptions.content_type``."""
    return encode_pixels(composite.pixels, fmt)


def encode_pixels(pixels: npt.NDArray[np.uint8], fmt: Format) -> bytes:
    """Encode [h, w] L, [h, w, 3] RGB or [h, w, 4] RGBA uint8 pixels."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError(f"expected uint8 L, RGB or RGBA pixels, got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[:2]
    if max(width, height) > MAX_SIDE[fmt]:
        raise InvalidOptions(
            f"format: {fmt} holds at most {MAX_SIDE[fmt]} px per side, "
            f"the output is {width}x{height}; set max_side or use png"
        )
    if fmt == "jpg" and pixels.ndim == 3 and pixels.shape[2] == 4:
        raise InvalidOptions("format: jpg has no alpha; give a bg_color to flatten over")
    if fmt == "png" and pixels.ndim == 3:
        return _fpng(pixels)
    image = Image.fromarray(pixels)
    name, params = _SAVE[fmt]
    buffer = io.BytesIO()
    try:
        image.save(buffer, name, **params)
    except (OSError, ValueError) as exc:
        raise InvalidOptions(f"format: could not encode {width}x{height} as {fmt}: {exc}") from exc
    return buffer.getvalue()


def _fpng(pixels: npt.NDArray[np.uint8]) -> bytes:
    """[h, w, 3 or 4] uint8 as PNG through fpng (which checks neither shape nor dtype itself)."""
    if pixels.shape[2] not in (3, 4) or 0 in pixels.shape:
        raise ValueError(f"expected RGB or RGBA pixels, got {pixels.shape}")
    data = fpng.from_ndarray(pixels)
    if not data:  # fpng's encoder answers False, which the binding turns into no bytes
        height, width = pixels.shape[:2]
        raise InvalidOptions(f"format: could not encode {width}x{height} as png")
    return bytes(data)
