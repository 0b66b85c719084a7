"""From the model's mask to the subject: which parts to keep, the alpha at source size, metadata.

Input: the segmenter's float mask [h, w] in [0, 1] at model size (e.g. 320x320, the source
squeezed to that square, aspect ignored) and the upright source size (width, height).

Steps and the numbers behind them:

* **Selection** happens at model size, where it is cheap. Components are the 8-connected regions
  of ``mask >= 0.5``. Policy ``all`` keeps the mask untouched (what rembg does). Policy ``main``
  keeps one **main** component and drops each other one for the first reason that holds:
  ``small`` (area < ``SMALL_RATIO`` x the largest's), ``cut_by_frame`` (it touches the image
  border and its area < ``EDGE_RATIO`` x the largest's: a thing the frame cut off is rarely what
  was photographed), ``out_of_focus`` (relative focus < ``FOCUS_RATIO``) or ``low_confidence``
  (mean mask value over its pixels < ``CONFIDENCE_MIN``). The area ratios hold in source pixels
  too, since the squeeze to model size scales every area by the same factor. A dropped
  component takes its soft edge with it: every pixel with mask > 0 goes to its nearest
  component (a Euclidean distance transform), and the pixels owned by a dropped one are zeroed.
* **Main** (the reference): the sharpest component among those with area >=
  ``MAIN_AREA_RATIO`` x the largest's and confidence >= ``CONFIDENCE_MIN`` (any large one when
  none is that confident), so a big blurred background object loses the main role to a smaller
  sharp one and is then dropped as ``out_of_focus``. Without ``image`` (no focus), the largest.
* **Focus** (``main`` only, when the caller passes the model-input pixels as ``image``; see
  ``pipeline.focus``): each component's mean Tenengrad (squared Sobel gradient; Pertuz et al.
  2013) on the grey model input over its inner edge band (its outermost 4 px), over the main
  one's. On the outline, not the inside, so that a flat clip-art fill (no gradient inside, a
  crisp outline) is not read as a blur.
* **The numbers** were chosen on the train composites only (160 images; u2netp and u2net masks
  cached; the table is in docs/QUALITY.md, "Subject selection"), each inside the range where no
  class lost IoU with either model: ``MAIN_AREA_RATIO`` = 0.25 (with u2netp, 0.1 let a sharp
  fragment take the main role, `multi` -0.006 IoU; 0.75 no longer let the sharp object take it
  from a large background part); ``FOCUS_RATIO`` = 0.25 (0.2-0.3 alike; with u2netp, 0.4 drops
  soft-edged clip-art parts, `illustration` -0.005); ``CONFIDENCE_MIN`` = 0.75 (0.7-0.8 alike;
  with u2netp, 0.85 drops clip-art parts the model half-believes, `illustration` -0.011).
  ``SMALL_RATIO`` and ``EDGE_RATIO`` are the earlier rule's.
* **Kept parts** (``main`` only) are listed in the metadata, the main one first, each with its
  confidence and a **portability** score in [0, 1]: ``0.4 x relative area + 0.4 x min(1,
  relative focus) + 0.2 x (not touching the frame)``, the area relative to the largest part's;
  a main component that is the largest and inside the frame scores 1.0. Unknown focus counts as
  1. Every dropped part carries its reason, relative focus (None when not measured) and
  confidence. Policy ``all`` scores nothing and its metadata has no ``kept`` key.
* **Layers** (``layers=True``, the job option of that name): the metadata also lists every
  part in label order (``pipeline.parts``: id = label - 1), each with its role (``main``,
  ``kept`` or ``dropped``), bbox, area, relative focus, drop reason (dropped parts) and
  portability (the others). Under ``main`` the roles are the selection's. Under ``all``
  nothing is dropped: the part ``main`` would choose is ``main``, every other ``kept``, scored
  the same way. Parts and the pixels each one owns are defined once, in ``pipeline.parts``, for
  selection here and for ``pipeline.recompose`` alike.
* **Alpha** = ``uint8(mask * 255)`` (truncated, as rembg does), resized to the source size with
  bilinear filtering: enlarging, OpenCV's ``INTER_LINEAR`` (pixel centres aligned as Pillow's
  BILINEAR; at most 1/255 apart from Pillow's, in an eighth of its time: 1.1 ms against 8.4 ms
  for 320->2048 in a one-off timing; ``bench/stages.py`` prints the whole mask stage beside
  Pillow's upscale alone); shrinking an axis (a source under the model's size),
  Pillow's BILINEAR, which antialiases where OpenCV's does not. rembg uses LANCZOS; on a
  blurred-blob test mask upscaled 320->2048 bilinear gives IoU 0.9998 at alpha >= 128 (max
  difference 7/255, mean 0.1/255) in a fraction of the time.
* **bbox** (x, y, w, h) in source pixels covers the pixels with alpha >= ``BBOX_ALPHA`` (26, just
  over 10% opacity): the faint residue a min-max normalised mask leaves across the background,
  and resampling ripples, do not widen it. ``empty`` is True when no pixel reaches it; then
  ``bbox`` is None and ``fraction`` is still reported.
* **fraction** is the mean opacity, ``mean(alpha) / 255`` over the whole image: a soft edge pixel
  counts for its opacity, so it reads as "share of the image the subject covers".
* **uncertainty** in [0, 1], at model size, after selection: of the pixels the model marks at all
  (mask > ``LOW``), the share whose value is ambiguous (``LOW`` < mask < ``HIGH``, i.e. 0.1-0.9).
  0 means a crisp mask (every marked pixel near 1); a clean subject scores about its edge band,
  typically < 0.15; high values (say > 0.5) mean most of what the model found is half-tone:
  glass, smoke, fur, a busy scene or no clear subject - a cut-out worth a look. An empty mask
  (nothing over ``LOW``) scores 0. It is measured at model size, so it does not depend on the
  source resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage

from pipeline.errors import EmptyMask, ModelError
from pipeline.focus import component_focus, relative_focus
from pipeline.options import SubjectPolicy
from pipeline.parts import PART_THRESHOLD, PartMap, hide_parts, label_parts, quantise

Bbox = tuple[int, int, int, int]

COMPONENT_THRESHOLD = PART_THRESHOLD
SMALL_RATIO = 0.05
EDGE_RATIO = 0.25
MAIN_AREA_RATIO = 0.25
FOCUS_RATIO = 0.25
CONFIDENCE_MIN = 0.75
BBOX_ALPHA = 26
LOW = 0.1
HIGH = 0.9
DropReason = Literal["small", "cut_by_frame", "out_of_focus", "low_confidence"]
Role = Literal["main", "kept", "dropped"]


@dataclass(frozen=True)
class DroppedComponent:
    """A part of the mask that ``main`` selection removed, and why."""

    reason: DropReason
    bbox: Bbox
    """In source pixels (x, y, w, h), scaled from the model-size mask."""
    area_fraction: float
    """Its area (mask >= 0.5) as a share of the image."""
    relative_focus: float | None = None
    """Its focus over the main component's (see ``pipeline.focus``); None without the image."""
    confidence: float | None = None
    """The mean mask value over its pixels (mask >= 0.5), in [0.5, 1]."""

    def to_metadata(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "bbox": list(self.bbox),
            "area_fraction": round(self.area_fraction, 6),
            "relative_focus": _rounded(self.relative_focus),
            "confidence": _rounded(self.confidence),
        }


@dataclass(frozen=True)
class KeptComponent:
    """A part of the mask that ``main`` selection kept: the main one first, then the others."""

    role: Literal["main", "kept"]
    bbox: Bbox
    """In source pixels (x, y, w, h), scaled from the model-size mask."""
    area_fraction: float
    """Its area (mask >= 0.5) as a share of the image."""
    relative_area: float
    """Its area over the largest component's, in (0, 1] (the main one need not be the largest)."""
    relative_focus: float | None
    """Its focus over the main component's; None when no image was given."""
    at_edge: bool
    """It touches the image border (at model size)."""
    confidence: float = 1.0
    """The mean mask value over its pixels (mask >= 0.5), in [0.5, 1]."""

    @property
    def portability(self) -> float:
        return portability(self.relative_area, self.relative_focus, self.at_edge)

    def to_metadata(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "bbox": list(self.bbox),
            "area_fraction": round(self.area_fraction, 6),
            "relative_area": round(self.relative_area, 6),
            "relative_focus": _rounded(self.relative_focus),
            "at_edge": self.at_edge,
            "confidence": round(self.confidence, 6),
            "portability": round(self.portability, 6),
        }


@dataclass(frozen=True)
class Part:
    """One part of the mask as the ``layers`` metadata lists it (``pipeline.parts``)."""

    id: int
    """Its label - 1: 0, 1, 2, ... in labelling order; stable for a given mask."""
    role: Role
    bbox: Bbox
    """In source pixels (x, y, w, h), scaled from the model-size mask."""
    area_fraction: float
    """Its area (mask >= 0.5) as a share of the image."""
    relative_area: float
    """Its area over the largest part's, in (0, 1] (the main one need not be the largest)."""
    relative_focus: float | None
    """Its focus over the main part's; None when no image was given."""
    at_edge: bool
    reason: DropReason | None = None
    """Why selection dropped it (role ``dropped`` only)."""
    confidence: float = 1.0
    """The mean mask value over its pixels (mask >= 0.5), in [0.5, 1]."""

    @property
    def portability(self) -> float | None:
        """``portability()`` of a shown part; None for a dropped one."""
        if self.role == "dropped":
            return None
        return portability(self.relative_area, self.relative_focus, self.at_edge)

    def to_metadata(self) -> dict[str, Any]:
        score = self.portability
        return {
            "id": self.id,
            "role": self.role,
            "bbox": list(self.bbox),
            "area_fraction": round(self.area_fraction, 6),
            "relative_focus": _rounded(self.relative_focus),
            "confidence": round(self.confidence, 6),
            "reason": self.reason,
            "portability": None if score is None else round(score, 6),
        }


@dataclass(frozen=True, eq=False)
class Subject:
    alpha: npt.NDArray[np.uint8] = field(repr=False)
    """[H, W] uint8 at source size."""
    bbox: Bbox | None
    fraction: float
    uncertainty: float
    empty: bool
    dropped: tuple[DroppedComponent, ...] = ()
    kept: tuple[KeptComponent, ...] | None = None
    """The parts ``main`` kept, scored; None under policy ``all`` (which scores nothing)."""
    layers: tuple[Part, ...] | None = None
    """Every part in label order, when asked for (``layers=True``); else None."""

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.alpha.shape[1]), int(self.alpha.shape[0]))

    def to_metadata(self) -> dict[str, Any]:
        """JSON-ready: what the job result records about the subject."""
        return {
            "bbox": None if self.bbox is None else list(self.bbox),
            "foreground_fraction": round(self.fraction, 6),
            "uncertainty": round(self.uncertainty, 6),
            "empty": self.empty,
            "dropped": [d.to_metadata() for d in self.dropped],
            **({} if self.kept is None else {"kept": [k.to_metadata() for k in self.kept]}),
            **({} if self.layers is None
               else {"layers": [p.to_metadata() for p in self.layers]}),
        }


def find_subject(
    mask: npt.NDArray[np.floating[Any]],
    source_size: tuple[int, int],
    *,
    policy: SubjectPolicy = "all",
    strict_empty: bool = False,
    image: npt.NDArray[np.uint8] | None = None,
    layers: bool = False,
) -> Subject:
    """Select, upscale and describe the subject; ``EmptyMask`` only when ``strict_empty``.

    ``image`` is the model's input (RGB uint8 [h, w, 3]); ``main`` scores focus from it and
    drops ``out_of_focus`` parts only when it is given. ``all`` ignores it, but for the
    ``layers`` list (``layers=True``), whose parts it scores."""
    mask = check_mask(mask)
    dropped: tuple[DroppedComponent, ...] = ()
    kept: tuple[KeptComponent, ...] | None = None
    parts: list[Part] = []
    if policy == "main":
        mask, parts = _keep_main(mask, source_size, image)
        dropped, kept = _dropped(parts), _kept(parts)
    elif layers:
        parts = _parts(mask, label_parts(mask), source_size, image, drop=False)
    alpha = upscale_mask(mask, source_size)
    bbox = alpha_bbox(alpha)
    if bbox is None and strict_empty:
        raise EmptyMask(f"no pixel of the mask reaches alpha {BBOX_ALPHA}")
    return Subject(
        alpha=alpha,
        bbox=bbox,
        fraction=float(alpha.mean()) / 255.0,
        uncertainty=uncertainty(mask),
        empty=bbox is None,
        dropped=dropped,
        kept=kept,
        layers=tuple(parts) if layers else None,
    )


def upscale_mask(
    mask: npt.NDArray[np.floating[Any]], size: tuple[int, int]
) -> npt.NDArray[np.uint8]:
    """Model-size float mask -> uint8 alpha at ``size`` (width, height), as rembg scales it."""
    small = quantise(mask)
    if small.shape == (size[1], size[0]):
        return small
    if size[0] >= small.shape[1] and size[1] >= small.shape[0]:
        # Enlarging (the usual case): OpenCV, 1/255 at most from Pillow's, 8x faster.
        return np.asarray(cv2.resize(small, size, interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
    # Shrinking an axis: OpenCV's INTER_LINEAR would not antialias, Pillow's BILINEAR does.
    resized = Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def alpha_bbox(alpha: npt.NDArray[np.uint8], threshold: int = BBOX_ALPHA) -> Bbox | None:
    """(x, y, w, h) of the pixels with alpha >= threshold, or None when there are none."""
    solid = alpha >= threshold
    rows = np.flatnonzero(solid.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(solid[rows[0] : rows[-1] + 1].any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def uncertainty(mask: npt.NDArray[np.floating[Any]]) -> float:
    """Share of the marked pixels (mask > LOW) whose value is ambiguous (LOW < mask < HIGH)."""
    marked = int(np.count_nonzero(mask > LOW))
    if marked == 0:
        return 0.0
    return int(np.count_nonzero(mask < HIGH) - np.count_nonzero(mask <= LOW)) / marked


def check_mask(mask: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
    """``mask`` as float32 [h, w]; ``ModelError`` for another shape, NaN or infinity."""
    if mask.ndim != 2 or 0 in mask.shape:
        raise ModelError(f"expected one [h, w] mask, got shape {mask.shape}")
    if not np.isfinite(mask).all():
        raise ModelError("the model's mask holds NaN or infinite values")
    return np.asarray(mask, dtype=np.float32)


def _keep_main(
    mask: npt.NDArray[np.float32], source_size: tuple[int, int],
    image: npt.NDArray[np.uint8] | None,
) -> tuple[npt.NDArray[np.float32], list[Part]]:
    """The mask with the dropped parts' pixels cleared (``pipeline.parts.hide_parts``: a
    dropped part's soft halo goes with it), and every part in label order."""
    found = label_parts(mask)
    parts = _parts(mask, found, source_size, image, drop=True)
    cleaned = hide_parts(mask, found, [p.id + 1 for p in parts if p.role == "dropped"])
    return cleaned, parts


def _parts(
    mask: npt.NDArray[np.float32], found: PartMap, source_size: tuple[int, int],
    image: npt.NDArray[np.uint8] | None, *, drop: bool,
) -> list[Part]:
    """Every part of ``mask`` (its labelling ``found``) scored, in label order; the main one is
    ``_reference``'s choice. With ``drop`` the others that fail a rule are ``dropped`` with
    its reason, else they are all ``kept``."""
    labels, count = found.labels, found.count
    if count == 0:
        return []
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    largest = int(areas.max())
    confidence = np.asarray(ndimage.mean(mask, labels, np.arange(1, count + 1)), np.float64)
    sharpness = None if image is None else component_focus(image, labels, count)
    main = _reference(areas, confidence, sharpness)
    focus = None if sharpness is None else relative_focus(sharpness, main)
    h, w = labels.shape
    parts: list[Part] = []
    for index, (area, box) in enumerate(zip(areas, ndimage.find_objects(labels), strict=True)):
        rel_focus = None if focus is None else float(focus[index])
        conf = float(confidence[index])
        rows, cols = box
        at_edge = rows.start == 0 or cols.start == 0 or rows.stop == h or cols.stop == w
        reason = (None if index == main or not drop
                  else _drop_reason(int(area) / largest, at_edge, rel_focus, conf))
        role: Role = "main" if index == main else "kept" if reason is None else "dropped"
        parts.append(Part(index, role, _scale_box(box, (h, w), source_size),
                          float(area) / (h * w), int(area) / largest, rel_focus, at_edge,
                          reason, conf))
    return parts


def _dropped(parts: list[Part]) -> tuple[DroppedComponent, ...]:
    return tuple(DroppedComponent(p.reason, p.bbox, p.area_fraction, p.relative_focus,
                                  p.confidence)
                 for p in parts if p.reason is not None)


def _kept(parts: list[Part]) -> tuple[KeptComponent, ...]:
    """The shown parts, the main one first, then in label order."""
    kept = [KeptComponent("main" if p.role == "main" else "kept", p.bbox, p.area_fraction,
                          p.relative_area, p.relative_focus, p.at_edge, p.confidence)
            for p in parts if p.reason is None]
    kept.sort(key=lambda part: part.role != "main")
    return tuple(kept)


def _reference(
    areas: npt.NDArray[np.intp], confidence: npt.NDArray[np.float64],
    sharpness: npt.NDArray[np.float64] | None,
) -> int:
    """0-based index of the main component: the sharpest of the large, confident ones.

    Large: area >= ``MAIN_AREA_RATIO`` x the largest's; confident: mean mask >=
    ``CONFIDENCE_MIN`` (when no large part is, every large part competes). Without focus (no
    image), the largest."""
    if sharpness is None:
        return int(np.argmax(areas))
    large = areas >= MAIN_AREA_RATIO * areas.max()
    sure = large & (confidence >= CONFIDENCE_MIN)
    candidates = np.flatnonzero(sure if sure.any() else large)
    return int(candidates[np.argmax(sharpness[candidates])])


def _drop_reason(
    relative_area: float, at_edge: bool, rel_focus: float | None, confidence: float
) -> DropReason | None:
    if relative_area < SMALL_RATIO:
        return "small"
    if at_edge and relative_area < EDGE_RATIO:
        return "cut_by_frame"
    if rel_focus is not None and rel_focus < FOCUS_RATIO:
        return "out_of_focus"
    if confidence < CONFIDENCE_MIN:
        return "low_confidence"
    return None


def portability(relative_area: float, rel_focus: float | None, at_edge: bool) -> float:
    """In [0, 1]: ``0.4 * relative area + 0.4 * min(1, relative focus) + 0.2 * (not at edge)``.

    Unknown focus (no image given) counts as 1. The main component, whole and inside the frame,
    scores 1.0."""
    sharp = 1.0 if rel_focus is None else min(1.0, rel_focus)
    return 0.4 * relative_area + 0.4 * sharp + 0.2 * (0.0 if at_edge else 1.0)


def _scale_box(box: tuple[slice, slice], shape: tuple[int, int], size: tuple[int, int]) -> Bbox:
    rows, cols = box
    sx, sy = size[0] / shape[1], size[1] / shape[0]
    x0, y0 = int(cols.start * sx), int(rows.start * sy)
    x1, y1 = min(size[0], round(cols.stop * sx)), min(size[1], round(rows.stop * sy))
    return (x0, y0, max(1, x1 - x0), max(1, y1 - y0))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
