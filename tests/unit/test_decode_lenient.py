"""Lenient decoding: damage confined to metadata or ancillary PNG chunks is a warning on the image;
damage to what the pixels depend on stays ``CorruptImage``, and each message names the part."""

from __future__ import annotations

import struct
import time
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import CorruptImage
from pipeline.imaging.decode import DecodeLimits, decode, decode_for_model, probe
from pipeline.imaging.png_chunks import screen
from tests.unit.corpus import (
    adobe_like_icc,
    damaged_exif,
    encode,
    exif_block,
    noise,
    png_bad_crc,
    png_chunks,
    png_flip_idat_bit,
    png_insert,
    png_offset,
    tiff_with_orientation_entry,
    top_bright,
)

NO_BOM = ("EXIF data is damaged (no TIFF byte-order mark: it starts b'XX\\x00*'); "
          "orientation 1 assumed")


def _upright() -> Image.Image:
    return top_bright(40, 60)


def _sideways() -> Image.Image:
    """Stored turned, so that orientation 6 makes it :func:`_upright`."""
    return _upright().transpose(Image.Transpose.ROTATE_90)


def _png(**params: object) -> bytes:
    return encode(_upright(), "PNG", **params)


def _assert_upright(rgba: np.ndarray) -> None:
    assert rgba.shape == (60, 40, 4)
    np.testing.assert_array_equal(rgba[..., :3], np.asarray(_upright()))


# -- damaged EXIF / XMP / TIFF orientation: orientation 1, a warning, the image decodes -----------


def test_jpeg_exif_without_byte_order_mark_decodes_as_stored_with_a_warning() -> None:
    data = encode(_upright(), "JPEG", exif=damaged_exif("no_byte_order_mark"))
    decoded = decode(data)
    assert (decoded.size, decoded.info.orientation) == ((40, 60), 1)
    assert decoded.info.warnings == (NO_BOM,)


def test_jpeg_exif_with_truncated_ifd_decodes_with_a_warning() -> None:
    decoded = decode(encode(_upright(), "JPEG", exif=damaged_exif("truncated_ifd")))
    assert (decoded.size, decoded.info.orientation) == ((40, 60), 1)
    assert decoded.info.warnings == (
        "JPEG metadata is damaged and was partly ignored: Corrupt EXIF data. Expecting to read "
        "12 bytes but only got 5.",
    )


def test_jpeg_exif_whose_ifd_offset_is_past_the_end_decodes_with_a_warning() -> None:
    decoded = decode(encode(_upright(), "JPEG", exif=damaged_exif("ifd_past_end")))
    assert (decoded.size, decoded.info.orientation) == ((40, 60), 1)
    assert decoded.info.warnings == (
        "JPEG metadata is damaged and was partly ignored: Corrupt EXIF data. Expecting to read "
        "2 bytes but only got 0.",
    )


def test_png_exif_chunk_without_byte_order_mark_decodes_with_a_warning() -> None:
    data = png_insert(_png(), b"eXIf", damaged_exif("no_byte_order_mark")[6:])
    decoded = decode(data)
    assert decoded.info.orientation == 1
    assert decoded.info.warnings == (NO_BOM,)
    _assert_upright(decoded.rgba)


def test_webp_exif_without_byte_order_mark_decodes_with_a_warning() -> None:
    data = encode(_upright(), "WEBP", lossless=True, exif=damaged_exif("no_byte_order_mark"))
    decoded = decode(data)
    assert (decoded.size, decoded.info.orientation, decoded.info.warnings) == ((40, 60), 1,
                                                                               (NO_BOM,))


def test_tiff_orientation_out_of_range_is_read_as_1_with_a_warning() -> None:
    decoded = decode(tiff_with_orientation_entry(3, 1, struct.pack("<HH", 12, 0)))
    assert decoded.info.orientation == 1
    assert decoded.info.warnings == ("TIFF orientation 12 is not 1-8; orientation 1 assumed",)
    _assert_upright(decoded.rgba)


def test_tiff_orientation_of_the_wrong_type_is_read_as_1_with_a_warning() -> None:
    decoded = decode(tiff_with_orientation_entry(2, 2, b"6\x00\x00\x00"))  # ASCII "6"
    assert decoded.info.orientation == 1
    assert decoded.info.warnings == ("TIFF orientation '6' is not 1-8; orientation 1 assumed",)
    _assert_upright(decoded.rgba)


def test_tiff_orientation_with_two_values_uses_the_first_with_a_warning() -> None:
    data = tiff_with_orientation_entry(3, 2, struct.pack("<HH", 6, 6), _sideways())
    decoded = decode(data)
    assert (decoded.info.size, decoded.info.orientation) == ((60, 40), 6)
    assert decoded.info.warnings == (
        "TIFF metadata is damaged and was partly ignored: Metadata Warning, tag 274 had too many "
        "entries: 2, expected 1",
    )
    _assert_upright(decoded.rgba)


def test_tiff_orientation_is_applied_once() -> None:
    """Newer Pillow turns a TIFF upright while loading it; the decoder must not turn it again."""
    data = encode(_sideways(), "TIFF", tiffinfo={0x0112: 6})
    decoded = decode(data)
    assert (decoded.info.size, decoded.info.upright_size) == ((60, 40), (40, 60))
    assert probe(data).size == (60, 40)
    _assert_upright(decoded.rgba)


def test_xmp_orientation_out_of_range_is_read_as_1_with_a_warning() -> None:
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
           b'22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
           b'tiff:Orientation="9"/></rdf:RDF></x:xmpmeta>')
    decoded = decode(encode(_upright(), "JPEG", xmp=xmp))
    assert decoded.info.orientation == 1
    assert decoded.info.warnings == ("XMP orientation 9 is not 1-8; orientation 1 assumed",)


@pytest.mark.parametrize("action", ["error", "default", "ignore"])
@pytest.mark.parametrize("damage", ["no_byte_order_mark", "truncated_ifd", "ifd_past_end"])
def test_damaged_exif_decodes_the_same_whatever_the_warning_filters(
    action: Literal["error", "default", "ignore"], damage: str
) -> None:
    data = encode(_upright(), "JPEG", exif=damaged_exif(damage))
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter(action)
        decoded = decode(data)
    assert (decoded.size, decoded.info.orientation, len(decoded.info.warnings)) == ((40, 60), 1, 1)
    assert shown == []  # recorded on the image, not shown as well


def test_decoding_threads_each_record_their_own_warnings() -> None:
    damaged = encode(_upright(), "JPEG", exif=damaged_exif("truncated_ifd"))
    sound = _png()
    filters = list(warnings.filters)
    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(lambda i: decode(damaged if i % 2 else sound).info.warnings,
                             range(64)))
    assert warnings.filters == filters  # every swap undone
    assert seen[::2] == [()] * 32
    assert {len(w) for w in seen[1::2]} == {1}
    assert all(w[0].startswith("JPEG metadata is damaged") for w in seen[1::2])


def test_intact_exif_gives_no_warning() -> None:
    decoded = decode(encode(_sideways(), "JPEG", exif=exif_block(6)))
    assert (decoded.size, decoded.info.orientation, decoded.info.warnings) == ((40, 60), 6, ())


# -- PNG ancillary chunks: dropped with a warning naming the chunk -------------------------------


def test_png_bad_crc_on_phys_before_idat_decodes_with_a_warning() -> None:
    data = png_bad_crc(_png(dpi=(72, 72)), b"pHYs")
    assert png_offset(data, b"pHYs") < png_offset(data, b"IDAT")
    decoded = decode(data)
    assert decoded.info.warnings == ("PNG pHYs chunk has a bad CRC; the chunk was ignored",)
    _assert_upright(decoded.rgba)


def test_png_bad_crc_on_text_after_idat_decodes_with_a_warning() -> None:
    data = png_insert(_png(), b"tEXt", b"Comment\x00shot on a Tuesday", after_idat=True,
                      bad_crc=True)
    decoded = decode(data)
    assert decoded.info.warnings == ("PNG tEXt chunk has a bad CRC; the chunk was ignored",)
    _assert_upright(decoded.rgba)


def test_png_exif_after_idat_with_bad_crc_is_not_applied() -> None:
    data = png_insert(encode(_sideways(), "PNG"), b"eXIf", exif_block(6)[6:], after_idat=True,
                      bad_crc=True)
    decoded = decode(data)
    assert (decoded.size, decoded.info.orientation) == ((60, 40), 1)
    assert decoded.info.warnings == ("PNG eXIf chunk has a bad CRC; the chunk was ignored",)


def test_png_iccp_with_bad_crc_falls_back_to_srgb_with_a_warning() -> None:
    iccp = b"wide\x00\x00" + zlib.compress(adobe_like_icc())
    decoded = decode(png_insert(_png(), b"iCCP", iccp, bad_crc=True))
    assert decoded.colour == "invalid_ignored"
    assert decoded.info.warnings == ("PNG iCCP chunk has a bad CRC; the chunk was ignored (no ICC "
                                     "profile: sRGB is assumed)",)
    _assert_upright(decoded.rgba)  # pixels as stored, not converted


def test_png_iccp_that_cannot_be_inflated_falls_back_to_srgb_with_a_warning() -> None:
    decoded = decode(png_insert(_png(), b"iCCP", b"wide\x00\x00not zlib"))
    assert decoded.colour == "invalid_ignored"
    assert decoded.info.warnings == ("PNG iCCP chunk's profile cannot be decompressed; it was "
                                     "ignored (no ICC profile: sRGB is assumed)",)


def test_png_iccp_with_unknown_compression_method_falls_back_to_srgb() -> None:
    iccp = b"wide\x00\x05" + zlib.compress(adobe_like_icc())
    decoded = decode(png_insert(_png(), b"iCCP", iccp))
    assert decoded.colour == "invalid_ignored"
    assert decoded.info.warnings == ("PNG iCCP chunk is malformed (its compression method is 5, "
                                     "not 0); the chunk was ignored (no ICC profile: sRGB is "
                                     "assumed)",)


def test_png_damaged_iccp_is_corrupt_when_invalid_profiles_are_refused() -> None:
    data = png_insert(_png(), b"iCCP", b"wide\x00\x00" + zlib.compress(adobe_like_icc()),
                      bad_crc=True)
    with pytest.raises(CorruptImage, match=r"^PNG iCCP chunk \(the ICC profile\) is damaged"):
        decode(data, DecodeLimits(invalid_icc="reject"))


def test_png_ancillary_chunk_too_short_for_pillow_is_dropped_with_a_warning() -> None:
    decoded = decode(png_insert(_png(), b"pHYs", b"\x00" * 5))
    assert decoded.info.warnings == ("PNG pHYs chunk is malformed (5 bytes, 9 expected); the "
                                     "chunk was ignored",)


def test_png_without_iend_decodes_with_a_warning() -> None:
    data = _png()
    assert data.endswith(b"IEND\xaeB`\x82")
    decoded = decode(data[:-12])
    assert decoded.info.warnings == ("PNG file is damaged after its image data: the file ends "
                                     "without an IEND chunk",)
    _assert_upright(decoded.rgba)


def test_png_cut_inside_a_chunk_after_the_image_data_decodes_with_a_warning() -> None:
    data = png_insert(_png(), b"tEXt", b"Comment\x00hello", after_idat=True)[: -12 - 5]
    decoded = decode(data)
    assert decoded.info.warnings == ("PNG file is damaged after its image data: the file ends "
                                     "inside its tEXt chunk; 20 bytes from there were ignored",)


def test_png_with_nothing_to_drop_reaches_pillow_uncopied() -> None:
    data = _png(dpi=(72, 72))
    screened = screen(data)
    assert screened.data is data
    assert (screened.warnings, screened.dropped) == ((), frozenset())
    assert decode(data).info.warnings == ()


# -- PNG critical chunks: CorruptImage naming the chunk ------------------------------------------


def test_png_bad_crc_on_ihdr_is_corrupt_naming_ihdr() -> None:
    with pytest.raises(CorruptImage, match=r"^PNG IHDR chunk is damaged \(CRC mismatch\)$"):
        decode(png_bad_crc(_png(), b"IHDR"))


def test_png_bad_crc_on_plte_is_corrupt_naming_plte() -> None:
    palette = _upright().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    with pytest.raises(CorruptImage, match=r"^PNG PLTE chunk is damaged \(CRC mismatch\)$"):
        decode(png_bad_crc(encode(palette, "PNG"), b"PLTE"))


def test_png_bad_crc_on_iend_is_corrupt_naming_iend() -> None:
    with pytest.raises(CorruptImage, match=r"^PNG IEND chunk is damaged \(CRC mismatch\)$"):
        decode(png_bad_crc(_png(), b"IEND"))


def test_png_damaged_idat_is_corrupt() -> None:
    """A flipped bit Pillow alone would decode into wrong pixels: IDAT's CRC catches it."""
    data = png_flip_idat_bit(_png())
    at = png_offset(data, b"IDAT")
    with pytest.raises(CorruptImage, match=rf"^PNG image data \(IDAT\) is damaged: CRC mismatch "
                                           rf"in the IDAT chunk at byte {at}$"):
        decode(data)


def test_png_idat_that_does_not_inflate_is_corrupt_naming_the_image_data() -> None:
    junk = b"\x78\x9c" + b"\xff" * 18
    chunks = [chunk if chunk[4:8] != b"IDAT" else
              struct.pack(">I", len(junk)) + b"IDAT" + junk
              + struct.pack(">I", zlib.crc32(b"IDAT" + junk))
              for chunk in png_chunks(_png())]
    with pytest.raises(CorruptImage, match=r"^PNG image data \(IDAT\) is truncated or damaged: "):
        decode(_png()[:8] + b"".join(chunks))


def test_png_cut_inside_idat_is_corrupt_naming_the_image_data() -> None:
    data = _png()
    at = png_offset(data, b"IDAT")
    with pytest.raises(CorruptImage, match=rf"^PNG image data \(IDAT\) is truncated: the file "
                                           rf"ends inside the IDAT chunk at byte {at}$"):
        decode(data[: at + 30])


def test_png_cut_between_idat_chunks_is_corrupt() -> None:
    data = encode(noise(300, 300, seed=9), "PNG")  # over 64 KiB: several IDAT chunks
    chunks = png_chunks(data)
    assert [c[4:8] for c in chunks].count(b"IDAT") > 1
    with pytest.raises(CorruptImage, match=r"^PNG image data \(IDAT\) is truncated or damaged: "):
        decode(data[:8] + b"".join(chunks[:2]))  # IHDR and the first IDAT only


def test_png_whose_first_chunk_is_not_ihdr_is_corrupt() -> None:
    chunks = png_chunks(_png(dpi=(72, 72)))
    swapped = _png()[:8] + chunks[1] + chunks[0] + b"".join(chunks[2:])
    with pytest.raises(CorruptImage, match=r"^PNG IHDR chunk is missing: the first chunk is pHYs$"):
        decode(swapped)


def test_png_framing_broken_before_the_image_data_is_corrupt() -> None:
    data = _png(dpi=(72, 72))
    at = png_offset(data, b"pHYs")
    broken = data[:at] + struct.pack(">I", 9) + b"p\x00Ys" + data[at + 8 :]
    with pytest.raises(CorruptImage, match=rf"^PNG file is damaged before its image data \(IDAT\): "
                                           rf"the chunk framing breaks at byte {at}"):
        decode(broken)


def test_png_without_idat_is_corrupt() -> None:
    chunks = png_chunks(_png())
    with pytest.raises(CorruptImage, match=r"^PNG has no image data: no IDAT chunk before IEND$"):
        decode(_png()[:8] + chunks[0] + chunks[-1])


@pytest.mark.parametrize("damage", ["flipped_bit", "cut_inside"])
def test_probe_reads_the_png_header_only(damage: str) -> None:
    data = _png()
    data = png_flip_idat_bit(data) if damage == "flipped_bit" else data[: len(data) - 20]
    assert probe(data).size == (40, 60)
    with pytest.raises(CorruptImage, match=r"^PNG image data \(IDAT\) is "):
        decode_for_model(data, (32, 32))


# -- messages name the part ---------------------------------------------------------------------


def test_truncated_jpeg_names_its_image_data() -> None:
    data = encode(noise(200, 150, seed=7), "JPEG")
    with pytest.raises(CorruptImage, match=r"^JPEG image data is truncated or damaged: "):
        decode(data[: len(data) // 2])


def test_damaged_jpeg_header_names_the_header() -> None:
    with pytest.raises(CorruptImage, match=r"^JPEG header is damaged: "):
        decode(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)


# -- cost ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_png_screening_costs_little_next_to_decoding() -> None:
    """The chunk walk with every CRC against a full decode, on an incompressible 2048x2048 PNG."""
    data = encode(noise(2048, 2048, seed=11), "PNG")

    def best(run: Callable[[], object], times: int) -> float:
        fastest = float("inf")
        for _ in range(times):
            start = time.perf_counter()
            run()
            fastest = min(fastest, time.perf_counter() - start)
        return fastest

    screening = best(lambda: screen(data), 5)
    decoding = best(lambda: decode(data), 2)
    assert screening < 0.25 * decoding, (screening, decoding)  # measured: about 0.04
