"""Refined edges: the mask's alpha re-estimated along its outline, guided by the image's colours.

A segmentation model's mask is upscaled from its input (320² for u2netp and u2net), so at the
image's size its edge is a smooth ramp a few model pixels wide: hair, fur and thin parts are
smeared, and the ramp lies partly over the background as a haze. ``refine_alpha`` re-estimates
alpha inside a **trimap** drawn from the mask: pixels within ``band_px`` (working pixels) of the
mask's 0.5 outline are unknown; the rest are taken as definite foreground (alpha >= 128) or
background and set to 255 or 0, which also removes the mask's faint haze away from the edge.

Inside the band, alpha is the **guided filter** of the thresholded mask (``alpha >= 128``, 0
or 1) with the RGB image as the guide: He, Sun and Tang, "Guided Image Filtering" (ECCV 2010;
TPAMI 35(6), 2013), Algorithm 1 with a colour guide (its eq. 19-21) and, as in the paper's
feathering example, a binary mask as the input: per window, alpha is a linear function of the
colour, fitted to the mask by ridge regression (``eps``), so the refined edge follows the colour
edges of the image, and a strand darker or lighter than the background behind it gets its own
alpha. The thresholded mask rather than the model's soft one: on the train composites the soft
ramp, filtered, stays a ramp (docs/QUALITY.md, "Refined edges"). Written
here (about twenty lines of NumPy over ``scipy.ndimage.uniform_filter``) because no installed
library has it: OpenCV's ``ximgproc.guidedFilter`` needs opencv-contrib, not a dependency, and
pymatting has none. Closed-form matting (pymatting's ``estimate_alpha_cf``, Levin, Lischinski
and Weiss, PAMI 2008) over the same trimap was measured against it on the train composites; see
docs/QUALITY.md, "Refined edges".

Bounded cost: the band and the filter are worked out on the whole image box-downscaled to at
most ``WORK_SIDE`` on its longest side (finer than the model's 320² mask already), and the
refined alpha is scaled back (bilinear) and written into the band only; at the image's size
there is only a threshold, two resizes and a copy. Pure NumPy/SciPy/Pillow: no I/O.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage

from pipeline.imaging.edges import at_working_size

WORK_SIDE = 512
"""The longest side, in pixels, of the image the refinement runs on."""
BAND_PX = 8
"""Half-width of the trimap's unknown band around the mask's outline, in working pixels."""
RADIUS = 8
"""The guided filter's window radius r (windows of (2r+1)², working pixels)."""
EPS = 1e-5
"""The guided filter's regulariser ε, on colours in [0, 1]: larger keeps the mask's own ramp."""

Alpha = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float32]


def unknown_band(alpha: Alpha, band_px: float) -> npt.NDArray[np.bool_]:
    """The trimap's unknown region [H, W] bool: pixels within ``band_px`` (Euclidean) of the
    outline between ``alpha >= 128`` and the rest. Empty when the mask is all one side."""
    inside = alpha >= 128
    if inside.all() or not inside.any():
        return np.zeros(alpha.shape, dtype=bool)
    # Distance from each pixel to the nearest pixel of the other side.
    to_outside = ndimage.distance_transform_edt(inside)
    to_inside = ndimage.distance_transform_edt(~inside)
    band: npt.NDArray[np.bool_] = np.where(inside, to_outside, to_inside) <= band_px
    return band


def refine_alpha(
    rgb: npt.NDArray[np.uint8], alpha: Alpha, *, work_side: int = WORK_SIDE,
    band_px: float = BAND_PX, radius: int = RADIUS, eps: float = EPS,
) -> Alpha:
    """The refined alpha [H, W] uint8 of ``alpha`` [H, W] uint8 over the image ``rgb``
    [H, W, 3] uint8: 0 or 255 off the band, the guided filter's answer on it (see the module
    docstring). ``band_px`` and ``radius`` are in working pixels."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or alpha.shape != rgb.shape[:2]:
        raise ValueError(f"rgb {rgb.shape} and alpha {alpha.shape} do not match")
    if work_side < 1 or radius < 1 or band_px <= 0 or eps <= 0:
        raise ValueError("work_side, radius, band_px and eps must be positive")
    height, width = alpha.shape
    inside = alpha >= 128
    out: Alpha = np.where(inside, 255, 0).astype(np.uint8)
    if inside.all() or not inside.any():
        return out
    image, matte = at_working_size(rgb, alpha, work_side)
    shrunk = image.size != (width, height)
    small_alpha = np.asarray(matte, dtype=np.uint8)
    # The band at working size, grown by one pixel so that, scaled up, it covers the outline.
    band = unknown_band(small_alpha, band_px + (1.0 if shrunk else 0.0))
    guide = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    q = guided_filter(guide, (small_alpha >= 128).astype(np.float32), radius, eps)
    refined = Image.fromarray(np.clip(np.rint(q * 255.0), 0, 255).astype(np.uint8))
    band_image = Image.fromarray(band.astype(np.uint8) * 255)
    if shrunk:
        refined = refined.resize((width, height), Image.Resampling.BILINEAR)
        band_image = band_image.resize((width, height), Image.Resampling.NEAREST)
    on_band = np.asarray(band_image) > 0
    out[on_band] = np.asarray(refined, dtype=np.uint8)[on_band]
    return out


def guided_filter(guide: Floats, src: Floats, radius: int, eps: float) -> Floats:
    """He et al.'s guided filter with a colour guide: ``guide`` [h, w, 3] and ``src`` [h, w]
    float32 in [0, 1]; returns the filtered ``src`` [h, w] float32 (not clipped)."""
    size = 2 * radius + 1

    def mean(x: Floats) -> Floats:
        out: Floats = ndimage.uniform_filter(x, size=size, mode="reflect")
        return out

    mean_i = np.stack([mean(guide[..., c]) for c in range(3)], axis=-1)
    mean_p = mean(src)
    cov_ip = np.stack([mean(guide[..., c] * src) for c in range(3)], axis=-1)
    cov_ip -= mean_i * mean_p[..., None]
    sigma = np.empty((*src.shape, 3, 3), dtype=np.float32)
    for i in range(3):
        for j in range(i, 3):
            sigma[..., i, j] = sigma[..., j, i] = (
                mean(guide[..., i] * guide[..., j]) - mean_i[..., i] * mean_i[..., j])
    sigma += np.float32(eps) * np.eye(3, dtype=np.float32)
    a = np.linalg.solve(sigma, cov_ip[..., None])[..., 0]  # [h, w, 3]
    b = mean_p - np.einsum("hwc,hwc->hw", a, mean_i)
    mean_a = np.stack([mean(a[..., c]) for c in range(3)], axis=-1)
    q: Floats = np.einsum("hwc,hwc->hw", mean_a, guide) + mean(b)
    return q
