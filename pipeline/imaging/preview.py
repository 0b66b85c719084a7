"""Small previews of a job's images for people (the review page): pure, bounded, no I/O.

A preview is derived from bytes already fetched: the source, or the cut-out (its colours with
their alpha, or the alpha alone as the mask). The bytes go through the same safe decoder as a
job's source (:func:`pipeline.imaging.decode.decode`, under the caller's ``DecodeLimits``), so
what is not an image, or too many pixels, is the same typed ``PermanentError``. The result is a
PNG whose longest side is at most ``max_side`` (never enlarged).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from pipeline.imaging.compose import downscale
from pipeline.imaging.decode import DEFAULT_LIMITS, DecodeLimits, decode
from pipeline.imaging.encode import encode_pixels

PreviewKind = Literal["source", "cutout", "mask"]
KINDS: tuple[PreviewKind, ...] = ("source", "cutout", "mask")
CONTENT_TYPE = "image/png"
MAX_PREVIEW_SIDE = 2048


class NoMask(ValueError):
    """The image has no alpha channel (a JPEG cut-out, or one over a background colour): it
    has no mask to show. Not a job's failure, so not a ``ClipError``: the caller answers it."""


def preview(data: bytes, kind: PreviewKind, max_side: int,
            limits: DecodeLimits = DEFAULT_LIMITS) -> bytes:
    """A PNG preview of ``data`` (an encoded image) at most ``max_side`` px on its longest side.

    ``kind``: ``source`` and ``cutout`` keep the colours and the alpha; ``mask`` is the alpha
    alone, in grey (white: kept). Raises the decoder's errors (``NotAnImage``,
    ``TooManyPixels``, ...), and ``NoMask`` for a mask of an image without alpha."""
    if not 1 <= max_side <= MAX_PREVIEW_SIDE:
        raise ValueError(f"max_side must be within 1..{MAX_PREVIEW_SIDE}, got {max_side}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    decoded = decode(data, limits, draft_to=(max_side, max_side))
    if kind == "mask":
        if not decoded.has_alpha:
            raise NoMask("the image has no alpha channel, so it has no mask to show")
        alpha = np.ascontiguousarray(decoded.rgba[..., 3])
        return encode_pixels(downscale(alpha, max_side), "png")
    pixels = decoded.rgba if decoded.has_alpha else np.ascontiguousarray(decoded.rgba[..., :3])
    return encode_pixels(downscale(pixels, max_side), "png")
