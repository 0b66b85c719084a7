"""Compose (alpha, flatten, crop, downscale) and encode (round trips of every format)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from pipeline.errors import InvalidOptions
from pipeline.imaging.compose import Composite, compose, crop_box, flatten, multiply_alpha
from pipeline.imaging.encode import encode, encode_pixels
from pipeline.options import OutputOptions


def _options(**raw: Any) -> OutputOptions:
    return OutputOptions.parse(raw)


def _source(width: int = 40, height: int = 30, alpha: int = 255) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(7)
    rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    rgba[..., 3] = alpha
    return rgba


def _alpha_box(width: int, height: int, box: tuple[int, int, int, int]) -> npt.NDArray[np.uint8]:
    x, y, w, h = box
    alpha = np.zeros((height, width), np.uint8)
    alpha[y : y + h, x : x + w] = 255
    return alpha


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# -- compose ------------------------------------------------------------------------------------


def test_rgba_keeps_colour_where_visible_and_zeroes_it_where_transparent() -> None:
    rgba = _source()
    alpha = _alpha_box(40, 30, (10, 5, 20, 10))
    alpha[0, 0] = 1
    out = compose(rgba, alpha, _options(), bbox=(10, 5, 20, 10))
    assert out.mode == "RGBA" and out.size == (40, 30) and out.crop_box == (0, 0, 40, 30)
    assert np.array_equal(out.pixels[5:15, 10:30, :3], rgba[5:15, 10:30, :3])
    assert np.array_equal(out.pixels[..., 3], alpha)
    assert out.pixels[0, 0].tolist() == [*rgba[0, 0, :3].tolist(), 1]
    assert int(out.pixels[20:, :, :3].max()) == 0


def test_existing_source_alpha_multiplies() -> None:
    rgba = _source(alpha=128)
    rgba[0, 0, 3] = 0
    alpha = np.full((30, 40), 255, np.uint8)
    alpha[1, 1] = 100
    out = compose(rgba, alpha, _options(), bbox=(0, 0, 40, 30))
    assert int(out.pixels[0, 0, 3]) == 0
    assert int(out.pixels[5, 5, 3]) == 128
    assert int(out.pixels[1, 1, 3]) == round(100 * 128 / 255)  # 50.2 -> 50
    assert out.pixels[0, 0, :3].tolist() == [0, 0, 0]


def test_multiply_alpha_rounds_exactly() -> None:
    mask = np.arange(256, dtype=np.uint8).repeat(256).reshape(256, 256)
    source = mask.T.copy()
    expected = np.round(mask.astype(float) * source / 255).astype(np.uint8)
    assert np.array_equal(multiply_alpha(mask, source), expected)


def test_flatten_is_exact_on_a_known_pixel() -> None:
    rgba = np.array([[[200, 100, 0, 9]]], np.uint8)  # the source's own alpha is not used here
    alpha = np.array([[64]], np.uint8)
    # (200*64 + 16*191)/255 = 62.18 -> 62; (100*64 + 32*191)/255 = 49.07 -> 49; 48*191/255 = 35.95
    assert flatten(rgba, alpha, (16, 32, 48)).tolist() == [[[62, 49, 36]]]


def test_flatten_matches_float_rounding_everywhere() -> None:
    rgba = np.arange(256, dtype=np.uint8).repeat(256).reshape(256, 256, 1).repeat(4, axis=2)
    rgba[..., 1] = 255 - rgba[..., 0]
    alpha = np.arange(256, dtype=np.uint8)[None, :].repeat(256, axis=0)
    colour = (255, 7, 128)
    a = alpha.astype(float)[..., None]
    rgb = rgba[..., :3].astype(float)
    expected = np.round((rgb * a + np.array(colour) * (255 - a)) / 255).astype(np.uint8)
    assert np.array_equal(flatten(rgba, alpha, colour), expected)


def test_bg_color_gives_opaque_rgb() -> None:
    rgba = _source()
    alpha = _alpha_box(40, 30, (10, 5, 20, 10))
    out = compose(rgba, alpha, _options(bg_color="00ff00"), bbox=(10, 5, 20, 10))
    assert out.mode == "RGB" and out.pixels.shape == (30, 40, 3)
    assert out.pixels[0, 0].tolist() == [0, 255, 0]
    assert out.pixels[6, 11].tolist() == rgba[6, 11, :3].tolist()


def test_alpha_channel_gives_the_mask_alone() -> None:
    alpha = _alpha_box(40, 30, (10, 5, 20, 10))
    out = compose(_source(alpha=255), alpha, _options(channels="alpha"), bbox=(10, 5, 20, 10))
    assert out.mode == "L" and np.array_equal(out.pixels, alpha)


def test_crop_with_pixel_margin() -> None:
    alpha = _alpha_box(40, 30, (10, 5, 20, 10))
    out = compose(_source(), alpha, _options(crop=True, crop_margin="3px"), bbox=(10, 5, 20, 10))
    assert out.crop_box == (7, 2, 33, 18)
    assert out.size == (26, 16)
    assert int(out.pixels[3, 3, 3]) == 255 and int(out.pixels[2, 2, 3]) == 0


def test_crop_with_percent_margin_is_of_the_subject_sides() -> None:
    options = _options(crop=True, crop_margin="10%")
    assert crop_box((100, 100, 200, 50), options, (1000, 1000)) == (80, 95, 320, 155)


def test_crop_without_margin_is_the_bbox() -> None:
    alpha = _alpha_box(40, 30, (10, 5, 20, 10))
    out = compose(_source(), alpha, _options(crop=True), bbox=(10, 5, 20, 10))
    assert out.crop_box == (10, 5, 30, 15)
    assert int(out.pixels[..., 3].min()) == 255


def test_crop_margin_is_clamped_at_the_edges() -> None:
    options = _options(crop=True, crop_margin="50px")
    assert crop_box((2, 3, 10, 10), options, (40, 30)) == (0, 0, 40, 30)
    assert crop_box((30, 20, 10, 10), _options(crop=True, crop_margin="5px"), (40, 30)) == (
        25,
        15,
        40,
        30,
    )


def test_crop_of_an_empty_subject_keeps_the_frame() -> None:
    out = compose(_source(), np.zeros((30, 40), np.uint8), _options(crop=True), bbox=None)
    assert out.crop_box == (0, 0, 40, 30) and out.size == (40, 30)


def test_max_side_downscales_keeping_the_aspect() -> None:
    rgba = _source(400, 100)
    alpha = np.full((100, 400), 255, np.uint8)
    out = compose(rgba, alpha, _options(max_side=100), bbox=(0, 0, 400, 100))
    assert out.size == (100, 25)
    assert out.to_metadata() == {"output_size": [100, 25], "crop_box": [0, 0, 400, 100]}


def test_max_side_never_enlarges() -> None:
    out = compose(_source(), np.full((30, 40), 255, np.uint8), _options(max_side=4000), bbox=None)
    assert out.size == (40, 30)


def test_downscale_does_not_bleed_colour_from_transparent_pixels() -> None:
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere in the source
    rgba[..., 3] = 255
    rgba[:, :32, 1] = 255  # left half yellow
    alpha = np.zeros((64, 64), np.uint8)
    alpha[:, 32:] = 255  # keep only the red half
    out = compose(rgba, alpha, _options(max_side=16), bbox=(32, 0, 32, 64))
    visible = out.pixels[out.pixels[..., 3] > 0]
    # a straight (not premultiplied) resize would pull the yellow (zeroed: black) in at the seam
    assert int(visible[:, 0].min()) == 255 and int(visible[:, 1].max()) == 0


def test_max_side_with_a_mode_of_l() -> None:
    alpha = np.full((300, 200), 255, np.uint8)
    out = compose(_source(200, 300), alpha, _options(channels="alpha", max_side=30), bbox=None)
    assert out.pixels.shape == (30, 20) and int(out.pixels.min()) == 255


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="do not match"):
        compose(_source(), np.zeros((10, 10), np.uint8), _options(), bbox=None)


# -- encode -------------------------------------------------------------------------------------


def _cut_out() -> Composite:
    rgba = _source(64, 48)
    alpha = np.zeros((48, 64), np.uint8)
    alpha[10:40, 8:50] = 255
    alpha[10:40, 8] = 77  # a soft edge keeps its exact colour and alpha too
    return compose(rgba, alpha, _options(), bbox=(8, 10, 42, 30))


def test_png_round_trip_is_exact_where_visible_and_zero_where_transparent() -> None:
    composite = _cut_out()
    data = encode(composite, "png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = np.asarray(_decode(data))
    assert _decode(data).mode == "RGBA"
    assert np.array_equal(decoded, composite.pixels)
    assert int(decoded[decoded[..., 3] == 0][:, :3].max()) == 0


def test_webp_round_trip_is_lossless_where_visible() -> None:
    composite = _cut_out()
    image = _decode(encode(composite, "webp"))
    assert image.format == "WEBP" and image.mode == "RGBA"
    decoded = np.asarray(image)
    visible = composite.pixels[..., 3] > 0
    assert np.array_equal(decoded[visible], composite.pixels[visible])
    assert int(decoded[~visible][:, 3].max()) == 0


def test_jpg_has_no_alpha() -> None:
    rgba = _source(64, 48)
    composite = compose(rgba, np.full((48, 64), 255, np.uint8), _options(format="jpg"), bbox=None)
    image = _decode(encode(composite, "jpg"))
    assert image.format == "JPEG" and image.mode == "RGB" and image.size == (64, 48)


def test_jpg_over_a_colour_is_close_to_the_colour() -> None:
    flat = np.zeros((32, 32, 3), np.uint8)
    flat[:] = (20, 200, 90)
    decoded = np.asarray(_decode(encode_pixels(flat, "jpg"))).astype(int)
    assert np.abs(decoded - (20, 200, 90)).max() <= 3


def test_jpg_of_rgba_pixels_is_refused() -> None:
    with pytest.raises(InvalidOptions, match="jpg has no alpha"):
        encode_pixels(np.zeros((4, 4, 4), np.uint8), "jpg")


def test_alpha_only_is_an_eight_bit_grey_png() -> None:
    alpha = np.arange(256, dtype=np.uint8).reshape(16, 16)
    image = _decode(encode_pixels(alpha, "png"))
    assert image.mode == "L" and np.array_equal(np.asarray(image), alpha)


def test_flattened_png_is_opaque_rgb() -> None:
    rgb = _source(16, 8)[..., :3].copy()
    image = _decode(encode_pixels(rgb, "png"))
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), rgb)


def test_webp_over_its_size_limit_is_refused() -> None:
    with pytest.raises(InvalidOptions, match="at most 16383 px"):
        encode_pixels(np.zeros((1, 16384, 4), np.uint8), "webp")


def test_non_uint8_pixels_are_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        encode_pixels(np.zeros((4, 4, 4), np.float32), "png")


def test_zeroed_transparent_rgb_makes_png_smaller() -> None:
    rng = np.random.default_rng(3)
    noisy = rng.integers(0, 256, (128, 128, 4), dtype=np.uint8)
    noisy[..., 3] = 0
    noisy[32:96, 32:96, 3] = 255
    composite = compose(noisy, noisy[..., 3].copy(), _options(), bbox=None)
    assert len(encode(composite, "png")) < len(encode_pixels(noisy, "png")) / 2


def test_encoder_errors_become_invalid_options(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise OSError("encoder error -2")

    monkeypatch.setattr(Image.Image, "save", refuse)
    with pytest.raises(InvalidOptions, match="could not encode 4x4 as webp") as info:
        encode_pixels(np.zeros((4, 4, 4), np.uint8), "webp")
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize("shape", [(1, 1, 4), (1, 3001, 4), (2049, 1, 3), (7, 13, 3), (33, 65, 4)])
def test_png_of_any_rgb_or_rgba_shape_decodes_back_exactly(shape: tuple[int, int, int]) -> None:
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    image = _decode(encode_pixels(pixels, "png"))
    assert image.format == "PNG" and image.mode == ("RGBA" if shape[2] == 4 else "RGB")
    assert np.array_equal(np.asarray(image), pixels)


def test_png_of_a_strided_view_encodes_what_the_view_shows() -> None:
    pixels = np.random.default_rng(5).integers(0, 256, (40, 60, 4), dtype=np.uint8)
    view = pixels[3:37:2, 60:0:-3]  # a crop, every other row, columns reversed
    assert np.array_equal(np.asarray(_decode(encode_pixels(view, "png"))), view)


def test_png_with_two_channels_is_refused_before_the_encoder() -> None:
    with pytest.raises(ValueError, match="RGB or RGBA"):
        encode_pixels(np.zeros((4, 4, 2), np.uint8), "png")


def test_a_png_the_encoder_cannot_write_is_invalid_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import fpng

    monkeypatch.setattr(fpng, "from_ndarray", lambda _pixels: b"")
    with pytest.raises(InvalidOptions, match="could not encode 4x3 as png"):
        encode_pixels(np.zeros((3, 4, 4), np.uint8), "png")
