"""pipeline.imaging.pixels: Pillow's memory as numpy RGBA, through Arrow or the fallback."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from PIL import Image

from pipeline.imaging.pixels import is_opaque, rgba_array

RNG = np.random.default_rng(11)


def test_rgb_gets_alpha_255_and_exact_colour() -> None:
    rgb = RNG.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    rgba = rgba_array(Image.fromarray(rgb))
    assert rgba.shape == (300, 200, 4) and rgba.dtype == np.uint8
    assert np.array_equal(rgba[..., :3], rgb) and bool((rgba[..., 3] == 255).all())
    assert not rgba.flags.writeable


def test_rgba_outlives_its_image() -> None:
    pixels = RNG.integers(0, 256, (512, 512, 4), dtype=np.uint8)
    image = Image.fromarray(pixels)
    rgba = rgba_array(image)
    del image
    gc.collect()
    # New images of the same size would reuse freed memory, were the array not holding it.
    _others = [Image.new("RGBA", (512, 512), (7, 7, 7, 7)) for _ in range(4)]
    assert np.array_equal(rgba, pixels)
    assert not rgba.flags.writeable


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_an_image_over_one_pillow_block_falls_back_with_the_same_result(mode: str) -> None:
    # 2100 x 2100 x 4 bytes is over Pillow's default 16 MiB block: its rows are not contiguous.
    pixels = RNG.integers(0, 256, (2100, 2100, 4), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    expected = np.asarray(image.convert("RGBA"))
    assert np.array_equal(rgba_array(image), expected)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBX", "I;16"])
def test_other_modes_are_refused(mode: str) -> None:
    with pytest.raises(ValueError, match="RGB or RGBA"):
        rgba_array(Image.new(mode, (4, 4)))


def test_is_opaque_reads_alpha_only() -> None:
    rgba = RNG.integers(0, 256, (64, 48, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    assert is_opaque(rgba) and is_opaque(rgba[5:40, 3:30])
    rgba[..., :3] = 255  # colour never counts
    rgba[60, 47, 3] = 254
    assert not is_opaque(rgba)
    assert is_opaque(rgba[:60])  # a crop that leaves the translucent pixel out


def test_rgb_padding_that_is_not_255_is_never_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.imaging.pixels as pixels

    monkeypatch.setattr(pixels, "is_opaque", lambda _rgba: False)
    rgb = RNG.integers(0, 256, (30, 20, 3), dtype=np.uint8)
    rgba = pixels.rgba_array(Image.fromarray(rgb))
    assert np.array_equal(rgba[..., :3], rgb) and bool((rgba[..., 3] == 255).all())


def test_a_pillow_without_the_arrow_export_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.imaging.pixels as pixels

    def no_export(_image: object) -> None:
        raise TypeError("'Image' object is not iterable")  # what pyarrow says without it

    monkeypatch.setattr(pixels.pa, "array", no_export)
    rgb = RNG.integers(0, 256, (30, 20, 3), dtype=np.uint8)
    rgba = pixels.rgba_array(Image.fromarray(rgb))
    assert np.array_equal(rgba[..., :3], rgb) and bool((rgba[..., 3] == 255).all())
