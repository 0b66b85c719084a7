"""A deterministic stand-in for a segmentation model, for tests of everything around the model.

The mask of a pixel is how far its colour is from the image's background colour, taken as the
median colour of the one-pixel border, smoothed over a small box and clipped to [0, 1]. A red
square on white comes out as the square; a plain image comes out empty. No file, no weights.
``FakeSegmenters`` is the in-memory twin of ``pipeline.model_registry.ModelRegistry``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from pipeline.models import check_served
from pipeline.ports import Segmenter


class FakeSegmenter:
    """Implements the ``Segmenter`` port; counts its calls so tests can see batching."""

    def __init__(
        self,
        input_size: tuple[int, int] = (320, 320),
        *,
        full_scale: float = 96.0,
        smoothing: int = 3,
    ) -> None:
        """A colour ``full_scale`` away from the background (Euclidean, in 0..255 RGB) or more
        counts as fully foreground; ``smoothing`` is the box filter's width in pixels."""
        self._size = input_size
        self._full_scale = full_scale
        self._smoothing = smoothing
        self.calls: list[int] = []  # batch size of each predict call

    @property
    def input_size(self) -> tuple[int, int]:
        return self._size

    def predict(self, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        h, w = self._size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (h, w, 3):
            raise ValueError(
                f"expected [N, {h}, {w}, 3] uint8 images, got {list(images.shape)} {images.dtype}"
            )
        self.calls.append(int(images.shape[0]))
        pixels = images.astype(np.float32)
        border = np.concatenate(
            [pixels[:, 0], pixels[:, -1], pixels[:, 1:-1, 0], pixels[:, 1:-1, -1]], axis=1
        )
        background = np.median(border, axis=1)[:, None, None, :]  # [N, 1, 1, 3]
        distance = np.sqrt(((pixels - background) ** 2).sum(axis=-1)) / self._full_scale
        masks: npt.NDArray[np.float32] = np.clip(distance, 0.0, 1.0).astype(np.float32)
        if self._smoothing > 1:
            masks = ndimage.uniform_filter(masks, size=(1, self._smoothing, self._smoothing))
        return np.clip(masks, 0.0, 1.0, out=masks)


class FakeSegmenters:
    """Implements the ``Segmenters`` port in memory: the given segmenter per served model name
    (the first is the default); records each model asked for, served or not."""

    def __init__(self, models: Mapping[str, Segmenter]) -> None:
        if not models:
            raise ValueError("a registry serves at least one model")
        self.models = dict(models)
        self.asked: list[str] = []

    @classmethod
    def serving(cls, *names: str, input_size: tuple[int, int] = (320, 320)) -> FakeSegmenters:
        """A ``FakeSegmenter`` for each of ``names``."""
        return cls({name: FakeSegmenter(input_size) for name in names})

    @property
    def served(self) -> tuple[str, ...]:
        return tuple(self.models)

    def get(self, model: str) -> Segmenter:
        self.asked.append(model)
        return self.models[check_served(model, self.served)]
