"""Focus of each mask component: how sharp the image is inside it, relative to the main one.

The measure is the **Tenengrad** (squared Sobel gradient magnitude, averaged over a region), one
of the gradient-based operators compared in Pertuz, Puig and Garcia, "Analysis of focus measure
operators for shape-from-focus", Pattern Recognition 46 (2013), 1415-1432 (operator GRA6 there):
a defocused region has lost its high spatial frequencies, so its gradients are weak.

* **Pixels:** the model-input image (RGB uint8 [h, w, 3], the source squeezed to model size,
  e.g. 320x320), as grey (ITU-R BT.601 luma, float32 in [0, 255]), resized to the mask's shape
  if the two differ. Measured at model size, so the figure does not depend on source resolution.
* **Region:** each component (labels [h, w] int, 1..count) eroded by ``ERODE_PX`` pixels, so the
  mask edge itself, where the object meets the background and the gradient is the contrast
  between the two, does not count. A component that erosion empties is measured uneroded.
* **Unit:** grey levels squared per pixel (Sobel's 3x3 kernels, whose gain is 4, unnormalised).
  Only ratios are used: ``relative focus = focus(component) / focus(main)``, 1.0 for the main
  component, > 1 for a part sharper than it. When the main one is flat (focus 0: a uniform
  clip-art fill), nothing can be compared and every relative focus is 1.0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage

ERODE_PX = 2
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
    """Mean Tenengrad inside each eroded component: float64 [count], index 0 is label 1."""
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
        inner = ndimage.binary_erosion(region, iterations=ERODE_PX)
        if not inner.any():
            inner = region
        focus[index - 1] = float(energy[rows, cols][inner].mean())
    return focus


def relative_focus(focus: npt.NDArray[np.float64], main: int) -> npt.NDArray[np.float64]:
    """``focus / focus[main]`` (``main`` a 0-based index); all 1.0 when the main one is flat."""
    reference = float(focus[main])
    if reference <= 0.0:
        return np.ones_like(focus)
    return focus / reference
