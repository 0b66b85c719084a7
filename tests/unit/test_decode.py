"""Safe decoding: every corpus case, every refusal by name, modes, colour, orientation, drafts."""

from __future__ import annotations

import functools
import random
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile

from pipeline.errors import (
    CorruptImage,
    NotAnImage,
    ObjectTooLarge,
    PermanentError,
    TooManyPixels,
    UnsupportedFormat,
    UnsupportedMode,
)
from pipeline.imaging.colour import normalise_mode
from pipeline.imaging.decode import (
    DecodeLimits,
    check,
    decode,
    decode_for_model,
    model_input,
    model_input_from_rgba,
    probe,
)
from tests.unit.corpus import (
    CASES,
    EXIF_ORIENTATION,
    adobe_like_icc,
    encode,
    exif_rotated,
    noise,
    png_header_only,
    top_bright,
)

MODEL = (320, 320)
DECODABLE = [name for name, case in CASES.items() if case.expect_error is None]
REFUSED = [name for name, case in CASES.items() if case.expect_error is not None]


# -- the corpus ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REFUSED)
def test_corpus_case_is_refused_with_its_typed_error(name: str) -> None:
    case = CASES[name]
    with pytest.raises(case.expect_error) as caught:  # type: ignore[arg-type]
        decode(case.data)
    assert type(caught.value) is case.expect_error
    assert caught.value.transient is False


@pytest.mark.parametrize("name", DECODABLE)
def test_corpus_case_decodes_to_upright_rgba(name: str) -> None:
    case = CASES[name]
    decoded = decode(case.data)
    w, h = case.expect_size  # type: ignore[misc]
    assert decoded.rgba.shape == (h, w, 4)
    assert decoded.rgba.dtype == np.uint8
    assert decoded.size == (w, h)
    assert decoded.has_alpha is case.expect_alpha
    if not case.expect_alpha:
        assert (decoded.rgba[..., 3] == 255).all()


@pytest.mark.parametrize("name", DECODABLE)
def test_corpus_case_gives_model_input_of_exact_size(name: str) -> None:
    pixels = decode_for_model(CASES[name].data, (240, 320)).pixels
    assert pixels.shape == (240, 320, 3)
    assert pixels.dtype == np.uint8


# -- refusals -----------------------------------------------------------------------------------


def test_empty_data_is_not_an_image() -> None:
    with pytest.raises(NotAnImage, match="empty"):
        decode(b"")


def test_text_is_not_an_image_whatever_its_name() -> None:
    with pytest.raises(NotAnImage):
        decode(b"price list\n" * 10)


@pytest.mark.parametrize(
    "svg",
    [
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"\xef\xbb\xbf<?xml version='1.0'?><!-- made by hand -->\n<svg width='1'>",
        b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x">\n<svg>',
    ],
)
def test_svg_is_an_unsupported_format(svg: bytes) -> None:
    with pytest.raises(UnsupportedFormat, match="SVG"):
        decode(svg)


@pytest.mark.parametrize(
    ("head", "name"),
    [(b"\x00\x00\x00\x1cftypavif", "AVIF"), (b"\x00\x00\x00\x18ftypheic", "HEIF"),
     (b"8BPS\x00\x01", "PSD")],
)
def test_known_image_formats_outside_the_allowlist_are_named(head: bytes, name: str) -> None:
    with pytest.raises(UnsupportedFormat, match=name):
        decode(head + b"\x00" * 64)


def test_format_pillow_identifies_is_named_in_the_refusal() -> None:
    ppm = encode(Image.new("RGB", (4, 4)), "PPM")
    with pytest.raises(UnsupportedFormat, match="PPM"):
        decode(ppm)


def test_allowlist_is_the_callers() -> None:
    png = CASES["one_by_one"].data
    with pytest.raises(UnsupportedFormat, match="PNG is not an allowed format"):
        decode(png, DecodeLimits(formats=frozenset({"JPEG"})))


def test_more_bytes_than_the_limit_is_too_large() -> None:
    data = CASES["one_by_one"].data
    with pytest.raises(ObjectTooLarge):
        decode(data, DecodeLimits(max_bytes=len(data) - 1))
    assert decode(data, DecodeLimits(max_bytes=len(data))).size == (1, 1)


def test_pixel_limit_is_checked_on_the_header() -> None:
    png = encode(Image.new("RGB", (20, 10)), "PNG")
    with pytest.raises(TooManyPixels, match="20x10 = 200 pixels"):
        decode(png, DecodeLimits(max_pixels=199))
    assert decode(png, DecodeLimits(max_pixels=200)).size == (20, 10)


def test_pixel_bomb_header_is_refused_before_pixels_are_allocated() -> None:
    # 100k x 100k RGB would be 30 GB: a MemoryError or a killed process here means it was tried.
    with pytest.raises(TooManyPixels):
        decode_for_model(png_header_only(100_000, 100_000), MODEL)


def test_probe_describes_a_bomb_without_decoding_and_check_refuses_it() -> None:
    info = probe(png_header_only(100_000, 100_000))
    assert (info.format, info.size, info.frames) == ("PNG", (100_000, 100_000), 1)
    with pytest.raises(TooManyPixels):
        check(info)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("keep", [0.05, 0.3, 0.6, 0.9])
def test_truncated_file_is_corrupt_not_grey(fmt: str, keep: float) -> None:
    data = encode(noise(200, 150, seed=7), fmt)
    with pytest.raises(CorruptImage):
        decode(data[: int(len(data) * keep)])


def test_mutated_bytes_only_ever_raise_permanent_errors() -> None:
    """Bytes damaged at random: a decoded image or a PermanentError, never a vendor exception."""
    rng = random.Random(20240601)
    seeds = [CASES[name].data for name in ("cmyk_jpeg", "rgba_with_alpha", "webp_still",
                                           "tiff_float", "bmp", "exif_rotated_6", "animated_gif")]
    limits = DecodeLimits(formats=frozenset({"JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF"}))
    outcomes = set()
    for _ in range(400):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data))
            if rng.random() < 0.7:
                data[at] = rng.randrange(256)
            else:
                del data[at : at + rng.randint(1, 40)]
        try:
            decode(bytes(data), limits)
            outcomes.add("decoded")
        except PermanentError as exc:
            outcomes.add(exc.reason)
    assert {"decoded", "corrupt_image"} <= outcomes


@pytest.mark.parametrize("magic", [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBP"])
def test_damaged_header_is_corrupt(magic: bytes) -> None:
    with pytest.raises(CorruptImage):
        decode(magic + bytes(range(256)) * 4)


def test_decoding_refuses_to_run_if_truncated_images_were_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        decode(CASES["one_by_one"].data)


def test_animated_gif_is_refused_even_when_gif_is_allowed() -> None:
    with pytest.raises(UnsupportedFormat, match="3 frames"):
        decode(CASES["animated_gif"].data, DecodeLimits(formats=frozenset({"GIF"})))


def test_still_gif_decodes_when_gif_is_allowed() -> None:
    decoded = decode(CASES["gif_still"].data, DecodeLimits(formats=frozenset({"gif"})))
    assert decoded.size == (12, 10)
    assert tuple(decoded.rgba[5, 5]) == (0, 0, 255, 255)


def test_jpeg_with_extra_mpf_pictures_decodes_its_primary_picture() -> None:
    primary = Image.new("RGB", (16, 12), (200, 30, 30))
    data = encode(primary, "MPO", save_all=True, append_images=[Image.new("RGB", (4, 3))])
    decoded = decode(data)
    assert decoded.size == (16, 12)
    assert np.abs(decoded.rgba[6, 8, :3].astype(int) - (200, 30, 30)).max() <= 4


def test_unsupported_mode_is_refused() -> None:
    with pytest.raises(UnsupportedMode, match="LAB"):
        decode(CASES["tiff_lab"].data)


@pytest.mark.parametrize(
    "limits",
    [{"max_pixels": 0}, {"max_bytes": 0}, {"formats": frozenset({"AVIF"})},
     {"invalid_icc": "maybe"}],
)
def test_limits_reject_nonsense(limits: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DecodeLimits(**limits)  # type: ignore[arg-type]


# -- orientation --------------------------------------------------------------------------------


def _assert_top_bright(rgb: np.ndarray) -> None:
    h = rgb.shape[0]
    assert rgb[h // 8 : h // 2 - 2].mean() > 200
    assert rgb[h // 2 + 2 :].mean() < 40


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_comes_out_upright(orientation: int) -> None:
    decoded = decode(exif_rotated(orientation))
    assert decoded.size == (40, 60)
    _assert_top_bright(decoded.rgba[..., :3])
    assert decoded.rgba[2, 2, 0] > 200 and decoded.rgba[2, 2, 1] < 60  # the red mark, top left


def test_probe_reports_stored_and_upright_size() -> None:
    info = probe(exif_rotated(6))
    assert (info.size, info.upright_size, info.orientation) == ((60, 40), (40, 60), 6)


def test_model_input_of_rotated_jpeg_is_upright() -> None:
    _assert_top_bright(decode_for_model(exif_rotated(6), (60, 40)).pixels)


def test_orientation_outside_the_spec_is_read_as_1() -> None:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 9
    data = encode(top_bright(40, 60), "JPEG", exif=exif.tobytes())
    decoded = decode(data)
    assert (decoded.size, decoded.info.orientation) == ((40, 60), 1)
    assert decoded.info.warnings == ("EXIF orientation 9 is not 1-8; orientation 1 assumed",)


def test_png_exif_after_the_pixel_data_is_applied() -> None:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    png = encode(top_bright(40, 60).transpose(Image.Transpose.ROTATE_90), "PNG",
                 exif=exif.tobytes())
    # Move the eXIf chunk behind IDAT, where the PNG spec also allows it.
    start = png.index(b"eXIf") - 4
    (length,) = struct.unpack(">I", png[start : start + 4])
    chunk, rest = png[start : start + 12 + length], png[:start] + png[start + 12 + length :]
    iend = rest.index(b"IEND") - 4
    moved = rest[:iend] + chunk + rest[iend:]
    assert moved.index(b"eXIf") > moved.index(b"IDAT")
    decoded = decode(moved)
    assert decoded.size == (40, 60)
    _assert_top_bright(decoded.rgba[..., :3])


# -- modes --------------------------------------------------------------------------------------


def test_16bit_grey_is_scaled_not_clipped() -> None:
    grey = decode(CASES["png_16bit_grey"].data).rgba[0, :, 0].astype(int)
    ramp = np.linspace(0, 65535, 256).round()
    np.testing.assert_array_equal(grey, np.round(ramp * 255 / 65535).astype(int))
    assert (grey == 255).sum() == 1  # Pillow's own conversion would saturate most of the ramp


def test_palette_transparency_becomes_alpha() -> None:
    rgba = decode(CASES["palette_with_transparency"].data).rgba
    assert (rgba[:, :8, 3] == 0).all()
    assert (rgba[:, 8:] == (255, 0, 0, 255)).all()


def test_grey_alpha_keeps_its_alpha() -> None:
    source = noise(24, 16, "LA", seed=1)
    rgba = decode(encode(source, "PNG")).rgba
    la = np.asarray(source)
    np.testing.assert_array_equal(rgba[..., 3], la[..., 1])
    for channel in range(3):
        np.testing.assert_array_equal(rgba[..., channel], la[..., 0])


def test_rgba_alpha_and_colour_are_kept_exactly() -> None:
    source = noise(48, 32, "RGBA", seed=3)
    np.testing.assert_array_equal(decode(encode(source, "PNG")).rgba, np.asarray(source))


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_trns_colour_key_becomes_alpha(mode: str) -> None:
    im = Image.new(mode, (4, 2), 0 if mode == "L" else (0, 0, 0))
    im.paste(200 if mode == "L" else (200, 200, 200), (2, 0, 4, 2))
    rgba = decode(encode(im, "PNG", transparency=0 if mode == "L" else (0, 0, 0))).rgba
    assert (rgba[:, :2, 3] == 0).all() and (rgba[:, 2:, 3] == 255).all()


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    rgba = decode(CASES["cmyk_jpeg"].data).rgba
    assert np.abs(rgba[10, 10].astype(int) - (0, 255, 255, 255)).max() <= 3


@pytest.mark.parametrize(
    ("im", "expected"),
    [
        (Image.new("1", (3, 3), 1), 255),
        (Image.new("F", (3, 3), 0.5), 128),
        (Image.new("F", (3, 3), 7.0), 255),
        (Image.new("I", (3, 3), 32768), 128),
        (Image.new("I", (3, 3), -5), 0),
    ],
    ids=["1", "F", "F-clipped", "I", "I-clipped"],
)
def test_scalar_modes_map_to_8_bit_grey(im: Image.Image, expected: int) -> None:
    rgba = decode(encode(im, "TIFF" if im.mode != "1" else "PNG")).rgba
    assert (rgba[..., :3] == expected).all()


def _palette_alpha() -> Image.Image:
    im = Image.new("PA", (2, 2), (1, 200))
    im.putpalette([0, 0, 0, 10, 20, 30])
    return im


@pytest.mark.parametrize(
    ("im", "expected"),
    [
        (Image.new("YCbCr", (2, 2), (128, 128, 128)), (128, 128, 128)),
        (Image.new("RGBX", (2, 2), (1, 2, 3, 0)), (1, 2, 3)),
        (Image.new("I;16B", (2, 2), 65535), 255),
        (_palette_alpha(), (10, 20, 30, 200)),
        (Image.new("La", (2, 2), (100, 255)), (100, 255)),
    ],
    ids=["YCbCr", "RGBX", "I;16B", "PA", "La"],
)
def test_other_modes_normalise(im: Image.Image, expected: tuple[int, ...] | int) -> None:
    out = normalise_mode(im)
    assert out.mode in ("RGB", "RGBA", "L", "LA")
    assert out.getpixel((0, 0)) == expected


# -- ICC ----------------------------------------------------------------------------------------


def _rgb_png(icc: bytes, colour: tuple[int, ...] = (100, 150, 100), mode: str = "RGB") -> bytes:
    return encode(Image.new(mode, (8, 8), colour), "PNG", icc_profile=icc)


def test_wide_gamut_profile_is_converted_to_srgb() -> None:
    decoded = decode(CASES["icc_wide_gamut"].data)
    assert decoded.colour == "converted"
    # Adobe RGB's greener green: in sRGB the same colour needs less red (lcms gives 66, 151, 97).
    assert np.abs(decoded.rgba[0, 0, :3].astype(int) - (66, 151, 97)).max() <= 3


def test_alpha_survives_profile_conversion() -> None:
    decoded = decode(_rgb_png(adobe_like_icc(), (100, 150, 100, 77), "RGBA"))
    assert decoded.colour == "converted"
    assert (decoded.rgba[..., 3] == 77).all() and decoded.rgba[0, 0, 0] < 80


def test_srgb_profile_is_left_alone() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    decoded = decode(_rgb_png(srgb))
    assert decoded.colour == "srgb"
    assert tuple(decoded.rgba[0, 0]) == (100, 150, 100, 255)


def test_untagged_image_is_read_as_srgb() -> None:
    decoded = decode(CASES["one_by_one"].data)
    assert decoded.colour == "untagged"


def test_unreadable_profile_is_ignored_by_default_and_says_so() -> None:
    decoded = decode(CASES["icc_unreadable"].data)
    assert decoded.colour == "invalid_ignored"
    assert tuple(decoded.rgba[0, 0]) == (100, 150, 100, 255)


def test_unreadable_profile_is_corrupt_when_the_caller_says_reject() -> None:
    with pytest.raises(CorruptImage, match="ICC"):
        decode(CASES["icc_unreadable"].data, DecodeLimits(invalid_icc="reject"))


def test_profile_of_the_wrong_colour_space_is_invalid() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert decode(_rgb_png(srgb, 90, "L")).colour == "invalid_ignored"
    with pytest.raises(CorruptImage, match="does not fit L"):
        decode(_rgb_png(srgb, 90, "L"), DecodeLimits(invalid_icc="reject"))


# -- model input --------------------------------------------------------------------------------


@functools.cache
def _photo_jpeg(size: int = 2048) -> bytes:
    """Smooth gradients, so that DCT scaling and a full decode can be compared."""
    ramp = (np.arange(size, dtype=np.uint32) * 255 // size).astype(np.uint8)
    rgb = np.empty((size, size, 3), np.uint8)
    rgb[..., 0] = ramp[None, :]
    rgb[..., 1] = ramp[:, None]
    rgb[..., 2] = ((ramp[None, :].astype(np.uint16) + ramp[:, None]) // 2).astype(np.uint8)
    return encode(Image.fromarray(rgb), "JPEG", quality=90)


def test_jpeg_draft_decodes_at_a_fraction_no_smaller_than_asked() -> None:
    decoded = decode(_photo_jpeg(), draft_to=(320, 320))
    assert decoded.size == (512, 512)  # 1/4 scale: 1/8 would be 256, below 320
    assert decoded.info.size == (2048, 2048)


def test_draft_model_input_matches_the_one_from_the_full_decode() -> None:
    data = _photo_jpeg()
    drafted = decode_for_model(data, MODEL).pixels.astype(int)
    full = model_input(decode(data), MODEL).astype(int)
    assert drafted.shape == full.shape == (320, 320, 3)
    assert np.abs(drafted - full).mean() < 2.0


def test_transparent_pixels_reach_the_model_as_white() -> None:
    pixels = decode_for_model(CASES["palette_with_transparency"].data, (8, 16)).pixels
    assert (pixels[:, :8] == 255).all()
    assert (pixels[:, 8:] == (255, 0, 0)).all()


def test_model_input_from_rgba_composites_over_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 128
    np.testing.assert_array_equal(model_input_from_rgba(rgba, (4, 4)), np.full((4, 4, 3), 127))


def test_model_input_from_a_full_decode_matches_either_alpha_path() -> None:
    decoded = decode(_photo_jpeg())
    opaque = model_input(decoded, MODEL)
    premultiplied = model_input_from_rgba(decoded.rgba, MODEL, opaque=False)
    assert opaque.shape == (320, 320, 3)
    assert np.abs(opaque.astype(int) - premultiplied).max() <= 1


def test_model_input_keeps_transparency_of_a_full_decode() -> None:
    decoded = decode(CASES["palette_with_transparency"].data)
    pixels = model_input(decoded, (8, 16))
    assert (pixels[:, :8] == 255).all() and (pixels[:, 8:] == (255, 0, 0)).all()


def test_model_input_from_rgba_rejects_other_arrays() -> None:
    with pytest.raises(ValueError, match="RGBA"):
        model_input_from_rgba(np.zeros((4, 4, 3), np.uint8), MODEL)


def test_model_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        decode_for_model(CASES["one_by_one"].data, (0, 320))


def test_model_input_ignores_aspect_ratio_like_rembg() -> None:
    model_input = decode_for_model(CASES["strip_10000x20"].data, MODEL)
    assert model_input.pixels.shape == (320, 320, 3)
    assert model_input.info.size == (10_000, 20)

