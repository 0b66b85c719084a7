"""Pixel modes and colour: any decodable Pillow image to 8-bit sRGB ``RGB`` or ``RGBA``.

Rules (one per source mode; anything not listed is ``UnsupportedMode``):

==============  ==================================================================================
``RGB``         as is; a tRNS colour key (``info["transparency"]``) becomes an alpha channel
``RGBA``        as is, the source alpha kept
``RGBX``        the padding byte dropped
``RGBa``        un-premultiplied to ``RGBA``
``L``           grey; a tRNS grey key becomes alpha
``LA`` ``La``   grey plus alpha
``1``           black and white, 0 or 255
``P`` ``PA``    palette expanded; palette transparency (tRNS) becomes alpha, otherwise ``RGB``
``CMYK``        through its embedded CMYK profile when there is one, else Pillow's naive formula
                (Adobe's inverted CMYK is already un-inverted by Pillow's JPEG decoder)
``YCbCr``       to ``RGB``
``I;16*``       16-bit grey scaled to 8 bits by ``round(v * 255 / 65535)`` (Pillow would clip)
``I``           32-bit integer grey read as 16-bit data (where Pillow produces it: 16-bit PNG and
                TIFF), clipped to 0..65535 and scaled as above
``F``           float grey read as 0.0..1.0, clipped, times 255 rounded
==============  ==================================================================================

ICC: an embedded profile whose description names sRGB is taken as sRGB and not applied; any other
profile is converted to sRGB (perceptual intent) with ``PIL.ImageCms``, alpha carried over
unchanged. A profile that cannot be read, or whose colour space does not match the pixels (an RGB
profile on a grey image), is *invalid*: ``DecodeLimits.invalid_icc`` says whether that rejects the
image (``CorruptImage``) or the profile is ignored and the pixels read as sRGB, which is what web
browsers do. Either way the result's ``colour`` field says what happened, so nothing is silent.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

import numpy as np
from PIL import Image, ImageCms

from pipeline.errors import CorruptImage, UnsupportedMode

Colour = Literal["untagged", "srgb", "converted", "invalid_ignored"]
"""What happened to colour: no profile (read as sRGB), an sRGB profile (nothing to do), a profile
converted to sRGB, or an invalid profile ignored under ``invalid_icc="ignore"``."""

InvalidIcc = Literal["ignore", "reject"]

# The colour space a profile must have for each normalised pixel mode (ICC header field).
_PROFILE_SPACE = {"RGB": "RGB", "RGBA": "RGB", "L": "GRAY", "LA": "GRAY", "CMYK": "CMYK"}
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_TRANSFORM_CACHE = 32  # catalogs share a handful of profiles; building a transform costs ~1 ms


class _InvalidProfile(Exception):
    """An ICC profile that cannot be used for these pixels; turned into the caller's rule."""


def _scale16(im: Image.Image) -> Image.Image:
    values = np.asarray(im).astype(np.uint32)
    return Image.fromarray(((np.minimum(values, 65535) * 255 + 32767) // 65535).astype(np.uint8))


def _scale_int(im: Image.Image) -> Image.Image:
    values = np.clip(np.asarray(im, dtype=np.int64), 0, 65535)
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))


def _scale_float(im: Image.Image) -> Image.Image:
    values = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0)
    return Image.fromarray(np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8))


def _keyed(im: Image.Image) -> Image.Image:
    """RGB/L/P with a tRNS key gain alpha; without one they keep their mode (P expands to RGB)."""
    if "transparency" in im.info:
        return im.convert("LA" if im.mode == "L" else "RGBA")
    return im.convert("RGB") if im.mode == "P" else im


_NORMALISE: dict[str, Callable[[Image.Image], Image.Image]] = {
    "RGB": _keyed,
    "RGBA": lambda im: im,
    "RGBX": lambda im: im.convert("RGB"),
    "RGBa": lambda im: im.convert("RGBA"),
    "L": _keyed,
    "LA": lambda im: im,
    "La": lambda im: im.convert("LA"),
    "1": lambda im: im.convert("L"),
    "P": _keyed,
    "PA": lambda im: im.convert("RGBA"),
    "CMYK": lambda im: im,
    "YCbCr": lambda im: im.convert("RGB"),
    "I;16": _scale16,
    "I;16L": _scale16,
    "I;16B": _scale16,
    "I;16N": _scale16,
    "I": _scale_int,
    "F": _scale_float,
}

SUPPORTED_MODES: frozenset[str] = frozenset(_NORMALISE)


def normalise_mode(im: Image.Image) -> Image.Image:
    """One of ``RGB``, ``RGBA``, ``L``, ``LA``, ``CMYK`` at 8 bits; ICC still to be applied."""
    convert = _NORMALISE.get(im.mode)
    if convert is None:
        raise UnsupportedMode(f"pixel mode {im.mode!r} is not supported")
    return convert(im)


@lru_cache(maxsize=_TRANSFORM_CACHE)
def _transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The transform from ``icc`` to sRGB for ``mode`` pixels; None when the profile is sRGB."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = profile.profile.xcolor_space.strip()
        description = profile.profile.profile_description or ""
    except (OSError, ImageCms.PyCMSError, ValueError, TypeError) as exc:
        raise _InvalidProfile(f"unreadable ICC profile: {exc}") from exc
    if space != _PROFILE_SPACE[mode]:
        raise _InvalidProfile(f"a {space} ICC profile does not fit {mode} pixels")
    if "srgb" in description.lower():
        return None
    in_mode = {"RGBA": "RGB", "LA": "L"}.get(mode, mode)
    try:
        return ImageCms.buildTransform(
            profile, _SRGB, in_mode, "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL
        )
    except (OSError, ImageCms.PyCMSError, ValueError, TypeError) as exc:
        raise _InvalidProfile(f"ICC profile {description!r} cannot be converted: {exc}") from exc


def _apply(transform: ImageCms.ImageCmsTransform, im: Image.Image) -> Image.Image:
    if im.mode not in ("RGBA", "LA"):
        return transform.apply(im)
    *colour, alpha = im.split()
    base = Image.merge(im.mode[:-1], colour)
    return Image.merge("RGBA", (*transform.apply(base).split(), alpha))


def _untagged(im: Image.Image) -> Image.Image:
    if im.mode in ("RGB", "RGBA"):
        return im
    return im.convert("RGBA" if im.mode == "LA" else "RGB")


def to_srgb(
    im: Image.Image, icc: bytes | None, invalid_icc: InvalidIcc
) -> tuple[Image.Image, Colour]:
    """A normalised image in sRGB ``RGB`` or ``RGBA``, and what was done to its colour."""
    if not icc:
        return _untagged(im), "untagged"
    try:
        transform = _transform(icc, im.mode)
    except _InvalidProfile as exc:
        if invalid_icc == "reject":
            raise CorruptImage(str(exc)) from exc
        return _untagged(im), "invalid_ignored"
    if transform is None:
        return _untagged(im), "srgb"
    return _apply(transform, im), "converted"
