"""A decoded Pillow image as a numpy RGBA array, without Pillow's slow copy out.

``np.asarray(image)`` goes through ``Image.tobytes``, which runs Pillow's raw encoder line by
line and joins the pieces: two copies, about 25 ms of CPU for a 2048x2048 RGBA image on the
dev box, more than the JPEG decode itself. Pillow (11.2 and later) also exports its pixel memory
through the Arrow C data interface, which pyarrow reads without a copy. ``bench/stages.py``
measures the result as part of ``decode``.

That export works only while the image's rows are one contiguous block: Pillow allocates in
blocks of ``PILLOW_BLOCK_SIZE`` (16 MiB by default, i.e. up to 4,194,304 RGB or RGBA pixels, a
2048x2048 image); a larger image falls back to ``tobytes``, with the same result. Raising the
block size in a worker's environment (``PILLOW_BLOCK_SIZE=64m``) extends the fast path to
16.7 MP; nothing here changes Pillow's global state.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from PIL import Image


def rgba_array(image: Image.Image) -> npt.NDArray[np.uint8]:
    """[H, W, 4] uint8, read-only: an ``RGB`` image with alpha 255, an ``RGBA`` image as it is.

    Raises ``ValueError`` for any other mode (the decoder has normalised modes before this).
    """
    if image.mode not in ("RGB", "RGBA"):
        raise ValueError(f"expected an RGB or RGBA image, got {image.mode}")
    width, height = image.size
    try:
        # Both modes are four bytes a pixel in Pillow's memory (RGB as R, G, B, padding).
        flat = pa.array(image).flatten().to_numpy(zero_copy_only=True)
        view: npt.NDArray[np.uint8] = np.asarray(flat, np.uint8).reshape(height, width, 4)
    except (ValueError, TypeError, pa.ArrowException):
        # Rows spread over several blocks ("Image rows are not contiguous in memory"), or a
        # Pillow without the export (TypeError).
        out: npt.NDArray[np.uint8] = np.asarray(
            image if image.mode == "RGBA" else image.convert("RGBA"))
        return out
    if image.mode == "RGBA" or is_opaque(view):
        # Read-only, and it keeps the image's memory alive. RGB's padding byte is 255 as
        # Pillow's unpackers write it; it is checked, not assumed.
        return view
    rgba = view.copy()
    rgba[..., 3] = 255
    rgba.flags.writeable = False
    return rgba


def is_opaque(rgba: npt.NDArray[np.uint8]) -> bool:
    """Whether every alpha of [H, W, 4] uint8 ``rgba`` is 255 (a view with contiguous pixels,
    e.g. a crop, is fine). Reads each pixel as one little-endian 32-bit word, alpha its top
    byte: a third of the time of comparing the strided alpha bytes."""
    words = rgba.view(np.dtype("<u4"))
    return bool((words >= 0xFF000000).all())
