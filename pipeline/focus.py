"""Focus of each mask component: how sharp the image is along its edge, relative to the main one.

The measure is the **Tenengrad** (squared Sobel gradient magnitude, averaged over a region), one
of the gradient-based operators compared in Pertuz, Puig and Garcia, "Analysis of focus measure
operators for shape-from-focus", Pattern Recognition 46 (2013), 1415-1432 (operator GRA6 there):
a defocused region has lost its high spatial frequencies, so its gradients are weak.

* **Pixels:** the model-input image (RGB uint8 [h, w, 3], the source squeezed to model size,
  e.g. 320x320), as grey (ITU-R BT.601 luma, float32 in [0, 255]), resized to the mask's shape
  if the two differ. Measured at model size, so the figure does not depend on source resolution.
* **Region:** each component's **inner edge band** (labels [h, w] int, 1..count): its pixels
  less the component eroded by ``BAND_PX`` pixels, i.e. the outermost ``BAND_PX`` pixels of the
  part. That is where the object's outline is, and an outline is sharp in a sharp object
  whatever its inside holds: a flat clip-art fill has no gradient inside (the interior measure
  the previous rule used read it as a blur, 1-3 grey levels squared against 10^4-10^5 for a
  photo), but a crisp outline; a defocused object's outline is spread over the blur's width, so
  its band is weak too. This is the texture guard of docs/QUALITY.md ("Subject selection").
  A component thinner than the band is all band.
* **Unit:** grey levels squared per pixel (Sobel's 3x3 kernels, whose gain is 4, unnormalised).
  Only ratios are used: ``relative focus = focus(component) / focus(reference)``, 1.0 for the
  reference, > 1 for a part sharper than it. When the reference is flat (focus 0: no gradient
  even at its outline), nothing can be compared and every relative focus is 1.0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage

BAND_PX = 4
"""Width of the inner edge band, in model pixels (train composites: 4 px; see QUALITY.md)."""
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def grey(image: npt.NDArray[np.uint8], shape: tuple[int, int]) -> npt.NDArray[np.float32]:
    """RGB uint8 [h, w, 3] (or grey [h, w]) -> float32 luma [shape] in [0, 255]."""
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] < 3):
        raise ValueError(f"expected an [h, w, 3] or [h, w] image, got shape {image.shape}")
    if image.shape[:2] != shape:
        mode = "L" if image.ndim == 2 else "RGB"
        pixels = image if image.ndim == 2 else image[..., :3]
        resized = Image.fromarray(np.ascontiguousarray(pixels), mode).resize(
            (shape[1], shape[0]), Image.Resampling.BILINEAR
        )
        image = np.asarray(resized, dtype=np.uint8)
    if image.ndim == 2:
        return image.astype(np.float32)
    return np.asarray(image[..., :3].astype(np.float32) @ _LUMA, dtype=np.float32)


def tenengrad(luma: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Squared Sobel gradient magnitude per pixel, float32 [h, w] (grey levels squared)."""
    gx = ndimage.sobel(luma, axis=1, mode="nearest")
    gy = ndimage.sobel(luma, axis=0, mode="nearest")
    return np.asarray(gx * gx + gy * gy, dtype=np.float32)


def component_focus(
    image: npt.NDArray[np.uint8], labels: npt.NDArray[Any], count: int
) -> npt.NDArray[np.float64]:
    """Mean Tenengrad on each component's inner edge band: float64 [count], index 0 is label 1.

    ``image`` is RGB uint8 [h, w, 3] (or grey [h, w]); ``labels`` int [h, w] with components
    1..``count`` (0 is background). Grey levels squared per pixel; 0.0 for a missing label."""
    energy = tenengrad(grey(image, (int(labels.shape[0]), int(labels.shape[1]))))
    focus = np.zeros(count, dtype=np.float64)
    slices = ndimage.find_objects(labels)
    for index, box in enumerate(slices, start=1):
        if box is None:
            continue
        # Pad the box so erosion at its border behaves as it would in the whole image.
        rows = slice(max(0, box[0].start - 1), box[0].stop + 1)
        cols = slice(max(0, box[1].start - 1), box[1].stop + 1)
        region = labels[rows, cols] == index
        band = region & ~ndimage.binary_erosion(region, iterations=BAND_PX)
        focus[index - 1] = float(energy[rows, cols][band].mean())
    return focus


def relative_focus(focus: npt.NDArray[np.float64], main: int) -> npt.NDArray[np.float64]:
    """``focus / focus[main]`` (``main`` a 0-based index); all 1.0 when the main one is flat."""
    reference = float(focus[main])
    if reference <= 0.0:
        return np.ones_like(focus)
    return focus / reference
