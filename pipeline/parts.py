"""The parts of a mask: which pixels make up each one, and which pixels each one owns.

One rule, used by subject selection (``pipeline.subject``) when it drops a part and by
recomposition (``pipeline.recompose``) when a caller hides one, so both clear the same pixels:

* **Parts** are the 8-connected regions of ``mask >= PART_THRESHOLD`` (0.5), numbered 1..count
  in scipy's labelling order (row-major order of each region's first pixel). A part's public id
  (in the ``layers`` metadata and the recompose API) is its label minus one: 0, 1, 2, ...
* **Ownership**: every pixel belongs to its nearest part (a Euclidean distance transform over
  the pixels outside every part; ties go as scipy breaks them, the same way every time), so a
  part's soft edge, which lies under the threshold, goes with it.
* **Hiding** parts sets every pixel they own to 0 and leaves all other pixels as they are.

Everything runs at model size (e.g. 320x320) on a float mask; pure numpy/scipy.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

PART_THRESHOLD = 0.5
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True, eq=False)
class PartMap:
    """The labelled parts of one model-size mask."""

    labels: npt.NDArray[np.int32] = field(repr=False)
    """[h, w] int32: 0 outside every part, else the part's label (its id + 1)."""
    count: int

    def owners(self) -> npt.NDArray[np.int32]:
        """[h, w] int32: the label of the part nearest to each pixel (every pixel has one
        when ``count`` > 0; all 0 when there is no part). Costs one distance transform."""
        if self.count == 0:
            return np.zeros_like(self.labels)
        _, (iy, ix) = ndimage.distance_transform_edt(self.labels == 0, return_indices=True)
        owned: npt.NDArray[np.int32] = self.labels[iy, ix]
        return owned


def label_parts(mask: npt.NDArray[np.floating[Any]]) -> PartMap:
    """The 8-connected parts of ``mask >= PART_THRESHOLD``; ``mask`` is [h, w] float in [0, 1]."""
    labels, count = ndimage.label(mask >= PART_THRESHOLD, structure=_EIGHT_CONNECTED)
    return PartMap(np.asarray(labels, dtype=np.int32), int(count))


def hide_parts(
    mask: npt.NDArray[np.float32], parts: PartMap, hidden: Collection[int]
) -> npt.NDArray[np.float32]:
    """``mask`` with every pixel owned by the parts labelled ``hidden`` set to 0 (a copy; the
    mask itself when nothing is hidden). ``hidden`` holds labels (ids + 1)."""
    if not hidden:
        return mask
    cleaned = mask.copy()
    cleaned[np.isin(parts.owners(), list(hidden))] = 0.0
    return cleaned


def quantise(mask: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.uint8]:
    """[h, w] float in [0, 1] -> uint8 ``mask * 255`` truncated (values outside are clipped):
    the alpha a mask gives (``pipeline.subject.upscale_mask``) and the stored layers mask."""
    small: npt.NDArray[np.uint8] = (np.clip(mask, 0.0, 1.0) * 255).astype(np.uint8)
    return small


def dequantise(small: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """uint8 -> float32 ``small / 255``; ``quantise(dequantise(q)) == q`` for every q."""
    mask: npt.NDArray[np.float32] = small.astype(np.float32) / np.float32(255)
    return mask
