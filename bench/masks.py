"""Mask metrics shared by the benchmarks: load a mask, compare two, summarise many.

A mask here is a 2-D uint8 array, 0 = background, 255 = subject. Files may hold it as the alpha
of an RGBA/LA cut-out, as an L image, or as a grey RGB image (the U²-Net authors' results are
saved that way). Binary metrics split at 128, the threshold rembg's outputs and DAVIS-style
ground truth are read with. Pure numpy and Pillow, so it runs in either venv.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

THRESHOLD = 128
# DAVIS measures boundary F with a tolerance of 0.8 % of the image diagonal.
BOUNDARY_TOLERANCE = 0.008


class MaskFileError(ValueError):
    """A file that cannot be read as a mask (missing, not an image, a mode we do not map)."""


@dataclass(frozen=True)
class MaskComparison:
    """How far mask ``b`` is from mask ``a`` (the reference); each figure in [0, 1]."""

    iou: float  # of the two binary masks; 1.0 when both are empty
    mean_abs_diff: float  # of the soft masks, scaled to [0, 1]
    agreement: float  # share of pixels on the same side of the threshold
    boundary_f: float  # F-measure of the two binary outlines within the tolerance


def load_mask(path: Path) -> np.ndarray:
    """Read ``path`` as a uint8 mask: alpha of RGBA/LA/PA, the image itself for L and grey RGB."""
    try:
        with Image.open(path) as im:
            im.load()
            return _mask_of(im, path)
    except (OSError, Image.DecompressionBombError) as exc:
        raise MaskFileError(f"{path}: cannot read as an image ({exc})") from exc


def _mask_of(im: Image.Image, path: Path) -> np.ndarray:
    if im.mode in ("RGBA", "LA", "PA"):
        return np.asarray(im.getchannel("A"), dtype=np.uint8)
    if im.mode == "L":
        return np.asarray(im, dtype=np.uint8)
    if im.mode == "RGB":
        # Grey saved as RGB: any channel is the mask. Converting (not picking) keeps it honest
        # if a file is tinted after all.
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(im, dtype=np.float64)
        top = 65535.0 if wide.max(initial=0) > 255 else 255.0
        return np.clip(np.rint(wide / top * 255.0), 0, 255).astype(np.uint8)
    raise MaskFileError(f"{path}: mode {im.mode} is not a mask (want RGBA, LA, L or grey RGB)")


def resize_to(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``mask`` at ``shape`` (rows, cols), bilinear; returned as is when it already fits."""
    if mask.shape == shape:
        return mask
    im = Image.fromarray(mask, mode="L").resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def iou(a: np.ndarray, b: np.ndarray, threshold: int = THRESHOLD) -> float:
    fa, fb = a >= threshold, b >= threshold
    union = np.count_nonzero(fa | fb)
    if union == 0:
        return 1.0  # both say "no subject": they agree completely
    return float(np.count_nonzero(fa & fb) / union)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16)))) / 255.0


def agreement(a: np.ndarray, b: np.ndarray, threshold: int = THRESHOLD) -> float:
    return float(np.mean((a >= threshold) == (b >= threshold)))


def _outline(binary: np.ndarray) -> np.ndarray:
    # Subject pixels with a background 4-neighbour (or on the frame edge, as DAVIS pads).
    padded = np.pad(binary, 1, constant_values=False)
    interior = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return binary & ~interior


def _grow_1d(binary: np.ndarray, radius: int, axis: int) -> np.ndarray:
    # True where any pixel within ``radius`` along ``axis`` is: a window sum from a cumulative
    # sum, linear in the image size whatever the radius (a Pillow MaxFilter is quadratic in it).
    counts = np.cumsum(binary, axis=axis, dtype=np.int32)
    pad = [(0, 0), (0, 0)]
    pad[axis] = (1, 0)
    counts = np.pad(counts, pad)
    n = binary.shape[axis]
    hi = np.minimum(np.arange(n) + radius + 1, n)
    lo = np.maximum(np.arange(n) - radius, 0)
    return (np.take(counts, hi, axis=axis) - np.take(counts, lo, axis=axis)) > 0


def _dilate(binary: np.ndarray, radius: int) -> np.ndarray:
    """Grow ``binary`` by a (2·radius+1)² square; DAVIS uses a disk, a square is a bit kinder."""
    if radius <= 0:
        return binary
    return _grow_1d(_grow_1d(binary, radius, 0), radius, 1)


def boundary_f(a: np.ndarray, b: np.ndarray, threshold: int = THRESHOLD,
               tolerance: float = BOUNDARY_TOLERANCE) -> float:
    """F-measure of the outlines: a pixel of one counts if the other passes within tolerance."""
    ea, eb = _outline(a >= threshold), _outline(b >= threshold)
    na, nb = np.count_nonzero(ea), np.count_nonzero(eb)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    radius = max(1, round(tolerance * float(np.hypot(*a.shape))))
    precision = np.count_nonzero(eb & _dilate(ea, radius)) / nb
    recall = np.count_nonzero(ea & _dilate(eb, radius)) / na
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def compare(reference: np.ndarray, other: np.ndarray) -> MaskComparison:
    """All metrics of ``other`` against ``reference``, ``other`` resized to it if needed."""
    if reference.ndim != 2 or other.ndim != 2:
        raise ValueError(f"masks must be 2-D, got {reference.shape} and {other.shape}")
    other = resize_to(other, (reference.shape[0], reference.shape[1]))
    return MaskComparison(
        iou=iou(reference, other),
        mean_abs_diff=mean_abs_diff(reference, other),
        agreement=agreement(reference, other),
        boundary_f=boundary_f(reference, other),
    )


def compare_files(reference: Path, other: Path) -> MaskComparison:
    return compare(load_mask(reference), load_mask(other))


@dataclass(frozen=True)
class Summary:
    """Mean and worst of a set of comparisons."""

    count: int
    mean: MaskComparison
    min_iou: float
    max_mean_abs_diff: float
    min_agreement: float


def summarise(results: Sequence[MaskComparison]) -> Summary:
    if not results:
        raise ValueError("no comparisons to summarise")

    def avg(name: str) -> float:
        return float(np.mean([getattr(r, name) for r in results]))

    return Summary(
        count=len(results),
        mean=MaskComparison(iou=avg("iou"), mean_abs_diff=avg("mean_abs_diff"),
                            agreement=avg("agreement"), boundary_f=avg("boundary_f")),
        min_iou=min(r.iou for r in results),
        max_mean_abs_diff=max(r.mean_abs_diff for r in results),
        min_agreement=min(r.agreement for r in results),
    )
