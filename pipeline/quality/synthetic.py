"""Procedural stand-ins for the Debian cut-outs and photos: sources that need no download.

:func:`write_sources` draws, deterministically for a seed, three source folders that
``clipline datasets compose`` reads like the real ones::

    FOLDER/objects/photo/obj-NNN.png       RGBA "photo" objects: shaded, textured blobs and
                                           rounded boxes with soft antialiased edges
    FOLDER/objects/clipart/clip-NNN.png    RGBA clip-art: flat colours, a dark outline, a stripe
    FOLDER/backgrounds/photo/bg-NNN.png    RGB "photos": smooth noise at several scales over a
                                           gradient, some with a horizon

They are for tests and for a quality gate in CI that cannot download anything; they say nothing
about how a model does on real photographs.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage

from pipeline.quality.compositing import to_u8

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SyntheticSources:
    """The folders :func:`write_sources` wrote, by kind, as ``compose`` takes them."""

    objects: dict[str, Path]
    backgrounds: dict[str, Path]


def _colour(rng: np.random.Generator, sat: tuple[float, float] = (0.3, 0.9)) -> F64:
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(0.35, 0.95))
    return np.array(rgb) * 255.0


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> F64:
    n: F64 = ndimage.gaussian_filter(rng.normal(0.0, 1.0, shape), sigma)
    scaled: F64 = n / (n.std() + 1e-9)
    return scaled


def _distance(rng: np.random.Generator, h: int, w: int) -> F64:
    """Signed distance in pixels (negative inside) of a random blob or rounded box that fills
    most of an (h, w) canvas."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx, ry, rx = h / 2, w / 2, h * 0.44, w * 0.44
    if rng.random() < 0.5:  # a blob: an ellipse whose radius wobbles with the angle
        theta = np.arctan2((yy - cy) / ry, (xx - cx) / rx)
        rho = np.hypot((yy - cy) / ry, (xx - cx) / rx)
        wobble = 1.0 + sum(rng.uniform(0.0, 0.12) * np.cos(k * theta + rng.uniform(0, 6.3))
                           for k in (2, 3, 5))
        blob: F64 = (rho / (wobble / 1.2) - 1.0) * min(ry, rx)
        return blob
    corner = min(ry, rx) * rng.uniform(0.1, 0.6)
    qy = np.abs(yy - cy) - (ry - corner)
    qx = np.abs(xx - cx) - (rx - corner)
    outside = np.hypot(np.maximum(qy, 0.0), np.maximum(qx, 0.0))
    box: F64 = outside + np.minimum(np.maximum(qy, qx), 0.0) - corner
    return box


def photo_object(rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """RGBA uint8 (h, w, 4), 96-220 px a side: a shaded, textured shape with a soft edge
    (1.2-3 px ramp) and a specular highlight."""
    h, w = (int(v) for v in rng.integers(96, 221, 2))
    d = _distance(rng, h, w)
    alpha = np.clip(0.5 - d / rng.uniform(1.2, 3.0), 0.0, 1.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    light = 1.05 - 0.45 * (((xx / w) - 0.3) ** 2 + ((yy / h) - 0.25) ** 2)
    texture = 1.0 + 0.08 * _smooth_noise(rng, (h, w), 1.5) + 0.06 * _smooth_noise(rng, (h, w), 8)
    rgb = _colour(rng)[None, None, :] * (light * texture)[..., None]
    spot = np.exp(-(((xx - w * 0.35) / (w * 0.08)) ** 2 + ((yy - h * 0.3) / (h * 0.06)) ** 2))
    rgb = rgb + 120.0 * spot[..., None]
    return np.dstack([to_u8(rgb), to_u8(alpha * 255.0)])


def clipart_object(rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """RGBA uint8 (h, w, 4), 96-220 px a side: a flat-coloured shape with a dark outline
    (2-5 px), a stripe of a second colour, and a one-pixel antialiased edge."""
    h, w = (int(v) for v in rng.integers(96, 221, 2))
    d = _distance(rng, h, w)
    alpha = np.clip(0.5 - d, 0.0, 1.0)
    outline = float(rng.uniform(2.0, 5.0))
    fill, stripe = _colour(rng, (0.5, 1.0)), _colour(rng, (0.5, 1.0))
    yy = np.mgrid[0:h, 0:w][0]
    band = np.abs(yy - h * rng.uniform(0.3, 0.7)) < h * 0.08
    rgb = np.where(band[..., None], stripe, fill)
    rgb = np.where((d > -outline)[..., None], np.array([25.0, 22.0, 30.0]), rgb)
    return np.dstack([to_u8(rgb), to_u8(alpha * 255.0)])


def photo_background(rng: np.random.Generator, size: tuple[int, int] = (400, 300),
                     ) -> npt.NDArray[np.uint8]:
    """RGB uint8 (h, w, 3): coloured smooth noise at three scales over a vertical gradient,
    half of them split by a soft horizon into two colours (sky and ground)."""
    w, h = size
    top, bottom = _colour(rng, (0.1, 0.6)), _colour(rng, (0.1, 0.6))
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    if rng.random() < 0.5:
        t = 1.0 / (1.0 + np.exp(-(t - rng.uniform(0.35, 0.65)) * 40.0))
    base = top * (1.0 - t) + bottom * t
    detail = sum(a * _smooth_noise(rng, (h, w), s)[..., None] * rng.uniform(0.5, 1.5, 3)
                 for a, s in ((28.0, 24.0), (14.0, 6.0), (6.0, 1.0)))
    return to_u8(base + detail)


def write_sources(folder: Path, seed: int, *, n_objects: int = 12, n_clipart: int = 8,
                  n_backgrounds: int = 8) -> SyntheticSources:
    """Write the three source folders under ``folder`` (created; files overwritten), each
    file drawn from one generator seeded with ``seed``: same seed, byte-identical files."""
    rng = np.random.default_rng(seed)
    photo = folder / "objects" / "photo"
    clipart = folder / "objects" / "clipart"
    backgrounds = folder / "backgrounds" / "photo"
    for sub in (photo, clipart, backgrounds):
        sub.mkdir(parents=True, exist_ok=True)
    for i in range(n_objects):
        Image.fromarray(photo_object(rng), "RGBA").save(photo / f"obj-{i:03d}.png")
    for i in range(n_clipart):
        Image.fromarray(clipart_object(rng), "RGBA").save(clipart / f"clip-{i:03d}.png")
    for i in range(n_backgrounds):
        Image.fromarray(photo_background(rng), "RGB").save(backgrounds / f"bg-{i:03d}.png")
    return SyntheticSources({"photo": photo, "clipart": clipart}, {"photo": backgrounds})
