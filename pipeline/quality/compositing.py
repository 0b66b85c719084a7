"""The pixel work of a composite: backgrounds, shadows, placing, blurring and compositing.

Pure and deterministic: arrays in, arrays out, every random choice from the numpy
``Generator`` passed in. Shapes are (H, W) for planes, (H, W, 3) for colour; alpha is uint8
0..255 where it is stored and float64 0..1 where it is computed with; colours are straight
(not premultiplied) unless a name says ``premult``.

The one law every composite obeys (:func:`composite`)::

    image = floor(fg * a + bg * (1 - a) + 0.5),   a = alpha / 255,   in float64

from the uint8 ``fg``, ``alpha`` and ``bg`` that are returned, so re-compositing the true
foreground over a new background gives the exact ground-truth composite.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]
MAX_UPSCALE = 2.5  # an object is never drawn larger than 2.5x its source pixels
MARGIN = 2  # pixels between the main object and the frame


def to_u8(x: F64) -> U8:
    """Round half up and clip to 0..255."""
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def studio_background(rng: np.random.Generator, size: tuple[int, int]) -> tuple[F64, str]:
    """A studio sweep: a light plain colour, a soft vertical gradient and vignette, faint
    grain. Returns float64 (H, W, 3) in 0..255 and the base colour as ``#rrggbb``."""
    w, h = size
    hue, sat = rng.random(), rng.uniform(0.0, 0.3)
    value = rng.uniform(0.6, 0.97)
    base = np.array(colorsys.hsv_to_rgb(hue, sat, value)) * 255.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ramp = 1.0 + rng.uniform(0.04, 0.16) * (0.5 - yy / max(h - 1, 1))
    r2 = ((xx - w / 2) / w) ** 2 + ((yy - h * 0.45) / h) ** 2
    vignette = 1.0 - rng.uniform(0.05, 0.25) * r2
    grain = rng.normal(0.0, 0.8, (h, w, 1))
    bg = base[None, None, :] * (ramp * vignette)[..., None] + grain
    return np.clip(bg, 0, 255), "#{:02x}{:02x}{:02x}".format(*to_u8(base))


def photo_background(rng: np.random.Generator, photo: U8, size: tuple[int, int]) -> F64:
    """A random crop of ``photo`` (uint8 (H, W, 3)) with the set's aspect ratio, between half
    and all of the largest such crop, maybe mirrored, resized to ``size`` (w, h), with a mild
    brightness change. Returns float64 (h, w, 3) in 0..255."""
    w, h = size
    ph, pw = photo.shape[:2]
    k = min(pw / w, ph / h) * rng.uniform(0.5, 1.0)
    cw, ch = max(1, int(w * k)), max(1, int(h * k))
    x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    crop = Image.fromarray(photo[y0 : y0 + ch, x0 : x0 + cw], "RGB")
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = np.asarray(crop.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float64)
    return np.clip(out * rng.uniform(0.85, 1.1), 0, 255)


@dataclass(frozen=True, eq=False)
class Placed:
    """An object drawn on the frame: ``alpha`` uint8 (H, W), ``fg`` uint8 (H, W, 3) straight
    colours (filled from the nearest visible pixel where alpha is 0), ``box`` (x, y, w, h)
    of the drawn object in frame pixels (it may reach past the frame for a distractor)."""

    alpha: U8 = field(repr=False)
    fg: U8 = field(repr=False)
    box: tuple[int, int, int, int]
    scale: float


def _resized(cutout: U8, longest: float) -> tuple[U8, float]:
    h, w = cutout.shape[:2]
    longest = min(longest, MAX_UPSCALE * max(h, w))
    k = longest / max(h, w)
    size = (max(1, round(w * k)), max(1, round(h * k)))
    return np.asarray(Image.fromarray(cutout, "RGBA").resize(size, Image.Resampling.LANCZOS)), k


def _jitter(rgb: U8, rng: np.random.Generator) -> U8:
    """Mild lighting change: one brightness gain, a gamma and a small per-channel tint."""
    gain = rng.uniform(0.88, 1.12) * rng.uniform(0.96, 1.04, 3)
    gamma = rng.uniform(0.9, 1.1)
    x = (rgb.astype(np.float64) / 255.0) ** gamma * gain
    return to_u8(x * 255.0)


def place(rng: np.random.Generator, cutout: U8, size: tuple[int, int], fraction: float,
          *, at: tuple[float, float] | None = None) -> Placed:
    """Draw ``cutout`` (RGBA uint8, cropped to its visible part) on a (w, h) frame, its
    longest side ``fraction`` of the frame's shorter side (never more than
    :data:`MAX_UPSCALE` times its pixels), with a mild lighting jitter.

    ``at`` None: a random position with the whole object inside the frame (shrunk first if it
    cannot fit). ``at`` (cx, cy): centred there, possibly cut by the frame.
    """
    w, h = size
    obj, k = _resized(cutout, fraction * min(w, h))
    oh, ow = obj.shape[:2]
    if at is None and (ow > w - 2 * MARGIN or oh > h - 2 * MARGIN):
        shrink = min((w - 2 * MARGIN) / ow, (h - 2 * MARGIN) / oh)
        obj, k = _resized(cutout, shrink * max(ow, oh))
        oh, ow = obj.shape[:2]
    if at is None:
        x = int(rng.integers(MARGIN, w - ow - MARGIN + 1))
        y = int(rng.integers(MARGIN, h - oh - MARGIN + 1))
    else:
        x, y = round(at[0] - ow / 2), round(at[1] - oh / 2)
    rgb = _jitter(obj[..., :3], rng)
    alpha = np.zeros((h, w), np.uint8)
    fg = np.zeros((h, w, 3), np.uint8)
    sx0, sy0 = max(0, -x), max(0, -y)
    fx0, fy0, fx1, fy1 = max(0, x), max(0, y), min(w, x + ow), min(h, y + oh)
    if fx1 > fx0 and fy1 > fy0:
        alpha[fy0:fy1, fx0:fx1] = obj[sy0 : sy0 + fy1 - fy0, sx0 : sx0 + fx1 - fx0, 3]
        fg[fy0:fy1, fx0:fx1] = rgb[sy0 : sy0 + fy1 - fy0, sx0 : sx0 + fx1 - fx0]
    return Placed(alpha, _filled(fg, alpha), (x, y, ow, oh), round(float(k), 4))


def _filled(fg: U8, alpha: U8) -> U8:
    """``fg`` with every alpha-0 pixel set to its nearest visible pixel's colour."""
    hidden = alpha == 0
    if not hidden.any() or hidden.all():
        return fg
    _, (iy, ix) = ndimage.distance_transform_edt(hidden, return_indices=True)
    return np.ascontiguousarray(fg[iy, ix])


def add_shadow(rng: np.random.Generator, bg: F64, placed: Placed) -> F64:
    """Darken ``bg`` under and behind ``placed``: a soft drop shadow (the object's alpha moved
    down and aside, blurred) and a contact shadow (a blurred ellipse under its base). The
    shadow is part of the background: the ground truth never holds it."""
    h, w = bg.shape[:2]
    x, y, ow, oh = placed.box
    unit = min(w, h)
    a = placed.alpha.astype(np.float64) / 255.0
    shift = (round(oh * rng.uniform(0.02, 0.08)), round(ow * rng.uniform(-0.08, 0.08)))
    drop = ndimage.gaussian_filter(ndimage.shift(a, shift, order=1), unit * rng.uniform(0.01, 0.03))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rx, ry = max(ow * 0.42, 2.0), max(oh * 0.05, 2.0)
    cx, cy = x + ow / 2, y + oh - ry * 0.5
    ellipse = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0).astype(np.float64)
    contact = ndimage.gaussian_filter(ellipse, max(ry * 0.8, 1.5))
    shadow = np.clip(rng.uniform(0.2, 0.45) * drop + rng.uniform(0.3, 0.6) * contact, 0.0, 0.8)
    shaded: F64 = bg * (1.0 - shadow[..., None])
    return shaded


def add_blurred(bg: F64, placed: Placed, sigma: float) -> tuple[F64, F64]:
    """Composite ``placed`` over ``bg`` out of focus: colour and alpha blurred together
    (premultiplied) with a Gaussian of ``sigma`` pixels. Returns the new background and the
    blurred alpha (float64 (H, W) in 0..1) that was laid down."""
    a = placed.alpha.astype(np.float64) / 255.0
    premult = placed.fg.astype(np.float64) * a[..., None]
    blur_a = np.clip(ndimage.gaussian_filter(a, sigma), 0.0, 1.0)
    blur_p = np.stack([ndimage.gaussian_filter(premult[..., c], sigma) for c in range(3)], -1)
    return bg * (1.0 - blur_a[..., None]) + blur_p, blur_a


def composite(fg: U8, alpha: U8, bg: U8) -> U8:
    """``floor(fg * a + bg * (1 - a) + 0.5)`` with ``a = alpha / 255``, in float64; uint8
    (H, W, 3) from uint8 (H, W, 3), (H, W) and (H, W, 3)."""
    a = alpha.astype(np.float64)[..., None] / 255.0
    return to_u8(fg.astype(np.float64) * a + bg.astype(np.float64) * (1.0 - a))
