"""FakeSegmenter: the deterministic stand-in the pipeline's unit tests run on."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.adapters.segmenters.fake import FakeSegmenter
from pipeline.ports import Segmenter


def red_square_on_white(size: int = 64) -> np.ndarray:
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    image[16:48, 20:44] = (220, 20, 20)
    return image


def test_is_a_segmenter() -> None:
    segmenter = FakeSegmenter((64, 64))
    assert isinstance(segmenter, Segmenter) and segmenter.input_size == (64, 64)


def test_red_square_on_white_comes_out_as_the_square() -> None:
    masks = FakeSegmenter((64, 64)).predict(red_square_on_white()[None])
    assert masks.shape == (1, 64, 64) and masks.dtype == np.float32
    mask = masks[0]
    assert mask[18:46, 22:42].min() == 1.0  # the square, away from its smoothed edge
    outside = np.ones_like(mask, dtype=bool)
    outside[14:50, 18:46] = False
    assert mask[outside].max() == 0.0
    assert abs(int((mask > 0.5).sum()) - 32 * 24) <= 2 * (32 + 24)  # about the square


def test_plain_image_is_empty() -> None:
    plain = np.full((2, 32, 32, 3), (40, 90, 200), dtype=np.uint8)
    assert FakeSegmenter((32, 32)).predict(plain).max() == 0.0


def test_deterministic_and_counts_batches() -> None:
    segmenter = FakeSegmenter((64, 64))
    batch = np.stack([red_square_on_white(), np.zeros((64, 64, 3), np.uint8)])
    first, second = segmenter.predict(batch), segmenter.predict(batch)
    np.testing.assert_array_equal(first, second)
    assert segmenter.calls == [2, 2]


def test_rejects_images_not_at_model_size() -> None:
    with pytest.raises(ValueError, match=r"expected \[N, 64, 64, 3\] uint8"):
        FakeSegmenter((64, 64)).predict(np.zeros((1, 32, 32, 3), np.uint8))
