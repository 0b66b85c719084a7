"""Clean edges: foreground colour estimation ("colour decontamination") for soft alpha.

A pixel with 0 < alpha < 255 is a blend of the subject and the old background,
``I = a F + (1 - a) B``; the cut-out keeps ``I`` as its colour, so on a new background the old
one shows through as a halo. ``decontaminate`` replaces the colour of those pixels by an
estimate of ``F`` and leaves everything else alone: alpha is not read back or written, and
pixels with alpha 0 or 255 keep their bytes.

The estimate is pymatting's ``estimate_foreground_ml`` (MIT): the multi-level foreground
estimation of Germer, Uelwer, Conrad and Harmeling, "Fast Multi-Level Foreground Estimation"
(ICPR 2020), numba-compiled. pymatting imports numba, which takes ~1.8 s warm (minutes on the
very first import, while numba fills its cache), so it is imported here only when an image asks
for clean edges: workers and the API that never do pay nothing.

Bounded cost: the estimation runs on the bounding box of the soft band (grown by ``MARGIN_PX``
so the band sees the colours around it), shrunk to at most ``WORK_SIDE`` pixels on its longest
side; the estimated colours are scaled back up (bilinear) and written into the band only. The
solver's cost grows with the pixels it works on, so the bound holds for any input size. See
docs/QUALITY.md, "Clean edges", for the measurements behind ``WORK_SIDE``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

WORK_SIDE = 512
"""The longest side, in pixels, of the region the estimation runs on."""
MARGIN_PX = 8
"""Context around the soft band's bounding box, in pixels of the image."""


def soft_band(alpha: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Where ``alpha`` [H, W] is neither 0 nor 255."""
    band: npt.NDArray[np.bool_] = (alpha > 0) & (alpha < 255)
    return band


def warm() -> None:
    """Compile pymatting's numba kernels now and fill numba's on-disk cache, so the first image
    that asks for clean or refined edges does not pay it (over a minute in a fresh
    environment on a loaded 2-CPU machine; ``make venv`` and the worker image call this)."""
    yy, xx = np.mgrid[0:32, 0:32]
    alpha = np.clip((12 - np.hypot(yy - 16, xx - 16)) * 64, 0, 255).astype(np.uint8)
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    decontaminate(rgba, alpha)


def decontaminate(
    rgba: npt.NDArray[np.uint8], alpha: npt.NDArray[np.uint8], *, work_side: int = WORK_SIDE
) -> npt.NDArray[np.uint8]:
    """``rgba`` [H, W, 4] with the colour of its soft-alpha pixels (by ``alpha`` [H, W]) replaced
    by the estimated foreground colour; a new array, or ``rgba`` itself when no pixel is soft."""
    if rgba.ndim != 3 or rgba.shape[2] != 4 or alpha.shape != rgba.shape[:2]:
        raise ValueError(f"rgba {rgba.shape} and alpha {alpha.shape} do not match")
    if work_side < 1:
        raise ValueError(f"work_side must be at least 1, got {work_side}")
    band = soft_band(alpha)
    rows, cols = np.flatnonzero(band.any(axis=1)), np.flatnonzero(band.any(axis=0))
    if rows.size == 0:
        return rgba
    height, width = alpha.shape
    top, bottom = max(0, int(rows[0]) - MARGIN_PX), min(height, int(rows[-1]) + 1 + MARGIN_PX)
    left, right = max(0, int(cols[0]) - MARGIN_PX), min(width, int(cols[-1]) + 1 + MARGIN_PX)
    region = (slice(top, bottom), slice(left, right))
    foreground = _estimate(rgba[region][..., :3], alpha[region], work_side)
    out = rgba.copy()
    inside = band[region]
    out[region][inside, :3] = foreground[inside]
    return out


def at_working_size(
    rgb: npt.NDArray[np.uint8], alpha: npt.NDArray[np.uint8], work_side: int
) -> tuple[Image.Image, Image.Image]:
    """``rgb`` [H, W, 3] and ``alpha`` [H, W] uint8 as Pillow images, box-downscaled together so
    that neither side exceeds ``work_side`` (each working pixel is the mean of the pixels it
    covers, alpha included); at their own size when they already fit."""
    height, width = alpha.shape
    scale = min(1.0, work_side / max(height, width))
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    image, matte = Image.fromarray(np.ascontiguousarray(rgb)), Image.fromarray(alpha)
    if small != (width, height):
        image = image.resize(small, Image.Resampling.BOX)
        matte = matte.resize(small, Image.Resampling.BOX)
    return image, matte


def _estimate(
    rgb: npt.NDArray[np.uint8], alpha: npt.NDArray[np.uint8], work_side: int
) -> npt.NDArray[np.uint8]:
    """The estimated foreground [h, w, 3] uint8 of a region, worked out at most ``work_side``
    pixels on its longest side and scaled back to the region's size."""
    from pymatting import estimate_foreground_ml  # ~1.8 s import: only when asked for

    height, width = alpha.shape
    image, matte = at_working_size(rgb, alpha, work_side)
    colours = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    weights = np.asarray(matte, dtype=np.float32) / np.float32(255.0)
    estimate = estimate_foreground_ml(colours, weights)
    fg = Image.fromarray(np.clip(np.rint(estimate * 255.0), 0, 255).astype(np.uint8))
    if fg.size != (width, height):
        fg = fg.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(fg, dtype=np.uint8)
