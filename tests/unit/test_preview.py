"""``pipeline.imaging.preview``: small PNGs for people, bounded, never enlarged, typed refusals."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from pipeline.errors import NotAnImage, TooManyPixels
from pipeline.imaging.decode import DecodeLimits
from pipeline.imaging.preview import MAX_PREVIEW_SIDE, NoMask, preview


def encoded(size: tuple[int, int], mode: str = "RGBA", fmt: str = "PNG") -> bytes:
    colour = (200, 30, 40, 128) if mode == "RGBA" else (200, 30, 40)
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, fmt)
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_a_large_image_is_shrunk_to_the_side_keeping_its_shape_and_alpha() -> None:
    shown = opened(preview(encoded((1000, 500)), "cutout", 192))
    assert shown.format == "PNG" and shown.mode == "RGBA" and shown.size == (192, 96)


def test_a_small_image_is_never_enlarged() -> None:
    assert opened(preview(encoded((40, 30)), "source", 192)).size == (40, 30)


def test_the_mask_is_the_alpha_in_grey() -> None:
    shown = opened(preview(encoded((64, 64)), "mask", 32))
    assert shown.mode == "L" and shown.getpixel((5, 5)) == 128


def test_an_image_without_alpha_has_no_mask() -> None:
    with pytest.raises(NoMask):
        preview(encoded((64, 64), "RGB", "JPEG"), "mask", 32)


def test_what_is_not_an_image_or_too_large_is_the_decoders_typed_error() -> None:
    with pytest.raises(NotAnImage):
        preview(b"%PDF-1.7 not an image", "source", 192)
    with pytest.raises(TooManyPixels):
        preview(encoded((200, 200)), "source", 192, DecodeLimits(max_pixels=100))


@pytest.mark.parametrize("side", [0, MAX_PREVIEW_SIDE + 1])
def test_a_side_out_of_bounds_is_refused(side: int) -> None:
    with pytest.raises(ValueError, match="max_side"):
        preview(encoded((10, 10)), "source", side)
