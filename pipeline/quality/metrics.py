"""The five numbers ``clipline eval`` gives for one image, and the version of their definitions.

Every function takes uint8 arrays as the files hold them (alpha [H, W] in 0..255, colours
[H, W, 3] in 0..255) and returns a float. A report records ``METRICS_VERSION``; a baseline
measured with other definitions is refused by the gate, so bump it whenever a definition here
changes (threshold, boundary extraction, tolerance, background).

Why our own code rather than ``pysodmetrics`` (PyPI): its MAE min-max normalises the prediction
first (an alpha of 0.2 everywhere would score as 0), its F-measures are region F-measures over
thresholds, not a boundary F with a pixel tolerance, and it has no re-composite measure; each
definition below is a few lines of NumPy and ``scipy.ndimage`` (already a dependency), written
to be checked by hand (tests/unit/test_quality_metrics.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

METRICS_VERSION = "clipline-metrics/2"
"""Changes whenever a definition below changes; the gate refuses to compare across versions.
/2 added ``recomposite_band`` (the re-composite error over the true edge band)."""

THRESHOLD = 128
"""0.5 of full alpha on uint8 (127.5 rounded up): ``alpha >= 128`` is foreground."""

BOUNDARY_TOLERANCE_PX = 3.0
"""Boundary F's matching distance, and the half-width of the edge band around a true outline."""

HIGHER_IS_BETTER: dict[str, bool] = {
    "iou": True, "mae": False, "boundary_f": True, "recomposite": False,
    "recomposite_band": False,
}
"""Each metric's name in reports, and its direction."""

Alpha = npt.NDArray[np.uint8]
Rgb = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Scores:
    """The five metrics of one image (see the functions of the same names)."""

    iou: float
    mae: float
    boundary_f: float
    recomposite: float
    recomposite_band: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def iou(pred: Alpha, truth: Alpha) -> float:
    """Intersection over union of the two masks, each thresholded at 0.5 (``>= 128``).

    Both masks empty ⇒ 1.0 (nothing to find, nothing found). Jaccard index, the "J" of the
    DAVIS benchmark (Perazzi et al., CVPR 2016). Shapes must match ([H, W] uint8).
    """
    _same_shape(pred, truth)
    p, t = pred >= THRESHOLD, truth >= THRESHOLD
    union = int(np.count_nonzero(p | t))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(p & t)) / union


def alpha_mae(pred: Alpha, truth: Alpha) -> float:
    """Mean absolute error of the alphas, both scaled to [0, 1] (no normalisation, no threshold).

    The MAE of the salient-object literature (Perazzi et al., CVPR 2012) taken on the raw alpha:
    soft edges and faint halos count by how much they are off."""
    _same_shape(pred, truth)
    diff = np.abs(pred.astype(np.int16) - truth.astype(np.int16))
    return float(diff.mean()) / 255.0


def boundary(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The inner boundary of a binary mask [H, W]: its pixels with a 4-neighbour outside it.

    The image frame is not a boundary (erosion pads with foreground): a subject cut off by the
    frame has no edge there to get right. A one-pixel-wide line, like DAVIS's ``seg2bmap``."""
    inner = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1),
                                   border_value=1)
    edge: npt.NDArray[np.bool_] = mask & ~inner
    return edge


def boundary_f(pred: Alpha, truth: Alpha, tolerance: float = BOUNDARY_TOLERANCE_PX) -> float:
    """Boundary F-measure: how well the outline of the prediction matches the truth's.

    Both alphas are thresholded at 0.5 and reduced to their ``boundary``. Precision is the
    share of predicted boundary pixels within ``tolerance`` pixels (Euclidean) of a true
    boundary pixel; recall the share of true boundary pixels within ``tolerance`` of a
    predicted one; F = 2PR / (P + R), 0 when both are 0. Both boundaries empty ⇒ 1.0; one
    empty ⇒ 0.0. The DAVIS "F" / BSDS boundary measure (Martin et al., PAMI 2004; Perazzi et
    al., CVPR 2016), with the distance transform standing in for their one-to-one matching
    (so a pixel may match twice: slightly kinder on ragged edges) and a fixed tolerance in
    pixels where DAVIS uses 0.8% of the image diagonal (7.8 px at 854x480).
    """
    _same_shape(pred, truth)
    bp, bt = boundary(pred >= THRESHOLD), boundary(truth >= THRESHOLD)
    n_pred, n_true = int(np.count_nonzero(bp)), int(np.count_nonzero(bt))
    if n_pred == 0 and n_true == 0:
        return 1.0
    if n_pred == 0 or n_true == 0:
        return 0.0
    to_true = ndimage.distance_transform_edt(~bt)
    to_pred = ndimage.distance_transform_edt(~bp)
    precision = float(np.count_nonzero(to_true[bp] <= tolerance)) / n_pred
    recall = float(np.count_nonzero(to_pred[bt] <= tolerance)) / n_true
    if precision + recall == 0.0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def new_background(height: int, width: int) -> Rgb:
    """The scene a cut-out is re-composited into: [H, W, 3] uint8, the same for every run.

    A diagonal gradient from teal (0, 140, 150) at the top left to magenta (220, 40, 150) at
    the bottom right: saturated colours that product photos' backgrounds (white, grey, beige)
    are far from, so a halo of the old background shows as error. No randomness."""
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    t = ((x + y) / 2.0)[..., None]
    start = np.array([0, 140, 150], np.float32)
    end = np.array([220, 40, 150], np.float32)
    out: Rgb = np.rint(start * (1.0 - t) + end * t).astype(np.uint8)
    return out


def over(colour: Rgb, alpha: Alpha, background: Rgb) -> npt.NDArray[np.float32]:
    """``colour`` over ``background`` by ``alpha``: [H, W, 3] float32 in [0, 1] (straight,
    not premultiplied, alpha; linear blend in the images' own sRGB values, as Pillow does)."""
    a = (alpha.astype(np.float32) / 255.0)[..., None]
    c = colour.astype(np.float32) / 255.0
    b = background.astype(np.float32) / 255.0
    out: npt.NDArray[np.float32] = c * a + b * (1.0 - a)
    return out


def recomposite_error(cutout: npt.NDArray[np.uint8], true_colour: Rgb, truth: Alpha,
                      background: Rgb | None = None) -> float:
    """What a user sees when the cut-out is reused in another scene.

    ``cutout`` is the engine's RGBA output [H, W, 4]; it is composited over ``background``
    (default ``new_background``) and compared with the true foreground ``true_colour`` [H, W, 3]
    composited over the same background by the true alpha ``truth`` [H, W]. The result is the
    mean absolute difference over all pixels and the three channels, in [0, 1]. A wrong alpha
    and colour spill of the old background (where alpha is soft) both count. For a real set
    without true foreground colours, the input image stands in for them: then spill in the
    input's own edge pixels is taken as true and goes unmeasured.
    """
    return float(recomposite_difference(cutout, true_colour, truth, background).mean())


def edge_band(truth: Alpha, width: float = BOUNDARY_TOLERANCE_PX) -> npt.NDArray[np.bool_]:
    """The true edge band [H, W] bool: where the true alpha is soft (0 < alpha < 255), or within
    ``width`` pixels (Euclidean) of the true outline (``boundary`` of ``truth >= 128``).

    Taken from the truth alone, so every candidate cut-out of an image is scored on the same
    pixels: a cut-out whose own soft band is narrower (a hard threshold) is not scored on fewer,
    easier pixels. The outline term gives binary truths (DAVIS) a band at all, and composites'
    hard-edged parts (clip-art) the pixels where a wrong soft edge would show."""
    soft: npt.NDArray[np.bool_] = (truth > 0) & (truth < 255)
    outline = boundary(truth >= THRESHOLD)
    if not outline.any():
        return soft
    near: npt.NDArray[np.bool_] = ndimage.distance_transform_edt(~outline) <= width
    return soft | near


def recomposite_band_error(cutout: npt.NDArray[np.uint8], true_colour: Rgb, truth: Alpha,
                           background: Rgb | None = None) -> float:
    """``recomposite_error`` over the true ``edge_band`` only: mean |difference| over the band's
    pixels and the three channels, in [0, 1]; 0.0 when the truth has no edge (nothing there to
    get wrong; a wrong cut-out of an empty truth shows in the frame-wide error).

    The frame-wide mean dilutes the edge by the flat inside and outside (a band is 5-25 % of
    a composite frame); this is the error where hair, fur and spill live."""
    band = edge_band(truth)
    if not band.any():
        return 0.0
    return float(recomposite_difference(cutout, true_colour, truth, background)[band].mean())


def recomposite_difference(cutout: npt.NDArray[np.uint8], true_colour: Rgb, truth: Alpha,
                           background: Rgb | None = None) -> npt.NDArray[np.float32]:
    """Per pixel [H, W] float32 in [0, 1]: |cut-out over ``background`` - true foreground over it
    by the true alpha|, averaged over RGB (see ``recomposite_error``)."""
    if cutout.ndim != 3 or cutout.shape[2] != 4:
        raise ValueError(f"cutout must be [H, W, 4] RGBA, got {list(cutout.shape)}")
    _same_shape(cutout[..., 3], truth)
    _same_shape(true_colour[..., 0], truth)
    if background is None:
        background = new_background(*truth.shape)
    seen = over(cutout[..., :3], cutout[..., 3], background)
    meant = over(true_colour, truth, background)
    diff: npt.NDArray[np.float32] = np.abs(seen - meant).mean(axis=2)
    return diff


def score(cutout: npt.NDArray[np.uint8], true_colour: Rgb, truth: Alpha) -> Scores:
    """All five metrics of one image: the engine's RGBA ``cutout`` [H, W, 4] against the true
    alpha [H, W] and true foreground colours [H, W, 3] (uint8, same size)."""
    alpha = cutout[..., 3]
    difference = recomposite_difference(cutout, true_colour, truth)
    band = edge_band(truth)
    return Scores(
        iou=iou(alpha, truth),
        mae=alpha_mae(alpha, truth),
        boundary_f=boundary_f(alpha, truth),
        recomposite=float(difference.mean()),
        recomposite_band=float(difference[band].mean()) if band.any() else 0.0,
    )


def _same_shape(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> None:
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"masks must be [H, W] of one size, got {list(a.shape)} and "
                         f"{list(b.shape)}")
