"""A corpus of bad and odd image inputs, generated in memory (no files, nothing downloaded).

Each :class:`Case` carries the bytes, a file name as a user might have named it (the name says
nothing to the decoder: a text file named ``.jpg`` is text) and the expected outcome of
``pipeline.imaging.decode.decode`` with default limits: an error class, or the upright size and
whether the image has alpha. End-to-end tests reuse :data:`CASES` and expect the same error's
``reason`` on the dead-lettered job::

    from tests.unit.corpus import CASES
    case = CASES["truncated_jpeg"]
    case.data, case.filename, case.expect_error      # bytes, "cut.jpg", CorruptImage

Pictures whose content tests check (orientation, colour) are described in :data:`Case.note`.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from pipeline.errors import (
    CorruptImage,
    NotAnImage,
    PermanentError,
    TooManyPixels,
    UnsupportedFormat,
    UnsupportedMode,
)

EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Case:
    data: bytes = field(repr=False)
    filename: str
    expect_error: type[PermanentError] | None = None
    expect_size: tuple[int, int] | None = None  # (width, height) after orientation
    expect_alpha: bool | None = None
    note: str = ""


def encode(im: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


def noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Incompressible pixels, so that cutting a file short really cuts pixel data."""
    channels = len(mode)
    rng = np.random.default_rng(seed)
    shape = (height, width, channels) if channels > 1 else (height, width)
    return Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode)


def top_bright(width: int, height: int) -> Image.Image:
    """Upright picture: top half white, bottom half black, a red mark in the top-left corner."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[: height // 2] = 255
    pixels[: height // 8, : width // 8] = (255, 0, 0)
    return Image.fromarray(pixels)


def exif_rotated(orientation: int, width: int = 40, height: int = 60) -> bytes:
    """A JPEG stored sideways whose EXIF orientation makes it :func:`top_bright` upright."""
    upright = top_bright(width, height)
    # The stored picture is the upright one turned the opposite way of what the tag undoes.
    undo = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }
    stored = upright.transpose(undo[orientation])
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def _png_chunk(kind: bytes, payload: bytes, *, bad_crc: bool = False) -> bytes:
    crc = zlib.crc32(kind + payload) ^ (0xFFFFFFFF if bad_crc else 0)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_chunks(png: bytes) -> list[bytes]:
    """The chunks of a well-formed PNG after its signature, each whole (length, type, data, CRC)."""
    chunks, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack_from(">I", png, pos)
        chunks.append(png[pos : pos + 12 + length])
        pos += 12 + length
    return chunks


def png_offset(png: bytes, kind: bytes) -> int:
    """Byte offset of the first ``kind`` chunk (its length field)."""
    return png.index(kind) - 4


def png_bad_crc(png: bytes, kind: bytes) -> bytes:
    """The PNG with the CRC of its first ``kind`` chunk inverted; data and framing intact."""
    chunks = png_chunks(png)
    at = next(i for i, chunk in enumerate(chunks) if chunk[4:8] == kind)
    chunks[at] = chunks[at][:-4] + bytes(b ^ 0xFF for b in chunks[at][-4:])
    return png[:8] + b"".join(chunks)


def png_insert(png: bytes, kind: bytes, payload: bytes, *, after_idat: bool = False,
               bad_crc: bool = False) -> bytes:
    """A chunk added right after IHDR, or right before IEND (``after_idat``)."""
    chunks = png_chunks(png)
    at = len(chunks) - 1 if after_idat else 1
    chunks.insert(at, _png_chunk(kind, payload, bad_crc=bad_crc))
    return png[:8] + b"".join(chunks)


def png_flip_idat_bit(png: bytes, byte: int = 20) -> bytes:
    """The PNG with one bit flipped in its first IDAT's data, the CRC left as it was."""
    at = png_offset(png, b"IDAT") + 8 + byte
    return png[:at] + bytes([png[at] ^ 0x10]) + png[at + 1 :]


def exif_block(orientation: int = 6) -> bytes:
    """An EXIF block as a JPEG APP1 carries it: b"Exif\0\0", then a big-endian TIFF header
    (b"MM", 42, IFD0 at offset 8) and IFD0 with one entry, the orientation (SHORT)."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    data = exif.tobytes()
    assert data[:8] == b"Exif\x00\x00MM"
    return data


def damaged_exif(damage: str) -> bytes:
    """:func:`exif_block` with orientation 6, damaged: ``no_byte_order_mark`` (b"MM" gone),
    ``truncated_ifd`` (cut 5 bytes into IFD0's one 12-byte entry), ``ifd_past_end`` (IFD0's
    offset points past the end of the block)."""
    good = exif_block(6)
    if damage == "no_byte_order_mark":
        return good[:6] + b"XX" + good[8:]
    if damage == "truncated_ifd":
        return good[: 6 + 8 + 2 + 5]
    if damage == "ifd_past_end":
        return good[:10] + struct.pack(">I", 0xFFFF) + good[14:]
    raise ValueError(damage)


def tiff_with_orientation_entry(typ: int, count: int, value: bytes,
                                picture: Image.Image | None = None) -> bytes:
    """A little-endian TIFF of ``picture`` (default :func:`top_bright` 40x60, upright) whose
    orientation entry (tag 274) has the given type, count and 4-byte value field, as no writer
    would make it."""
    tags = {EXIF_ORIENTATION: 1}
    data = encode(picture or top_bright(40, 60), "TIFF", tiffinfo=tags)
    entry = struct.pack("<HHI", EXIF_ORIENTATION, 3, 1) + b"\x01\x00\x00\x00"
    assert data.count(entry) == 1
    return data.replace(entry, struct.pack("<HHI", EXIF_ORIENTATION, typ, count) + value)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose valid IHDR claims width x height RGB pixels, with one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \x00\x00\x00\x00" + _s15(x) + _s15(y) + _s15(z)


def _pad4(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def adobe_like_icc(description: str = "Clipline test wide-gamut RGB (Adobe 1998)") -> bytes:
    """A minimal ICC v2 RGB display profile with Adobe RGB (1998) primaries and gamma 2.2.

    Built by hand because Pillow can only create sRGB, LAB and XYZ profiles; little CMS reads it.
    """
    text = description.encode("ascii") + b"\x00"
    desc = b"desc\x00\x00\x00\x00" + struct.pack(">I", len(text)) + text + b"\x00" * 79
    gamma = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(2.2 * 256)) + b"\x00\x00"
    tags = [
        (b"desc", desc),
        (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _xyz(0.6097, 0.3111, 0.0195)),
        (b"gXYZ", _xyz(0.2053, 0.6257, 0.0609)),
        (b"bXYZ", _xyz(0.1492, 0.0632, 0.7446)),
        (b"rTRC", gamma),
        (b"gTRC", gamma),
        (b"bTRC", gamma),
        (b"cprt", b"text\x00\x00\x00\x00public domain\x00"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, payload in tags:
        table += signature + struct.pack(">II", offset + len(body), len(payload))
        body += _pad4(payload)
    size = offset + len(body)
    header = (
        struct.pack(">I", size) + b"\x00" * 4 + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ " + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp"
        + b"\x00" * 24 + struct.pack(">I", 0) + _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    )
    return header.ljust(128, b"\x00") + table + body


def animated(fmt: str, frames: int = 3, size: tuple[int, int] = (32, 24)) -> bytes:
    pictures = [Image.new("RGB", size, (60 * i, 100, 200 - 50 * i)) for i in range(frames)]
    return encode(pictures[0], fmt, save_all=True, append_images=pictures[1:], duration=100)


def palette_with_transparency() -> bytes:
    """A P-mode PNG, 16x8: left half index 0 (transparent through tRNS), right half opaque red."""
    im = Image.new("P", (16, 8), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    im.paste(1, (8, 0, 16, 8))
    return encode(im, "PNG", transparency=0)


def gradient16(width: int = 256, height: int = 4) -> bytes:
    """A 16-bit grey PNG ramp 0..65535 left to right (Pillow mode I;16)."""
    ramp = np.linspace(0, 65535, width).round().astype(np.uint16)
    return encode(Image.fromarray(np.tile(ramp, (height, 1))), "PNG")


def _truncated(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


def _build() -> dict[str, Case]:
    white = Image.new("RGB", (320, 240), (255, 255, 255))
    rgba = noise(48, 32, "RGBA", seed=3)
    lab = Image.new("LAB", (8, 8), (50, 10, 10))
    cases = {
        "zero_bytes": Case(b"", "empty.jpg", NotAnImage),
        "text_named_jpg": Case(b"SKU,price\n1234,9.99\n" * 20, "catalog.jpg", NotAnImage),
        "truncated_jpeg": Case(_truncated(encode(noise(256, 256), "JPEG"), 0.6), "cut.jpg",
                               CorruptImage),
        "truncated_png": Case(_truncated(encode(noise(256, 256), "PNG"), 0.6), "cut.png",
                              CorruptImage),
        "png_claims_100k_x_100k": Case(png_header_only(100_000, 100_000), "bomb.png",
                                       TooManyPixels, note="no pixel data behind the header"),
        "cmyk_jpeg": Case(encode(Image.new("CMYK", (64, 48), (255, 0, 0, 0)), "JPEG"),
                          "print.jpg", None, (64, 48), False, "pure cyan"),
        "png_16bit_grey": Case(gradient16(), "depth16.png", None, (256, 4), False,
                               "ramp 0..65535 left to right"),
        "palette_with_transparency": Case(palette_with_transparency(), "icon.png", None, (16, 8),
                                          True, "left half transparent, right half red"),
        "grey_alpha_la": Case(encode(noise(24, 16, "LA", seed=1), "PNG"), "la.png", None,
                              (24, 16), True),
        "rgba_with_alpha": Case(encode(rgba, "PNG"), "cutout.png", None, (48, 32), True),
        "exif_rotated_6": Case(exif_rotated(6), "phone6.jpg", None, (40, 60), False,
                               "upright: top half bright, red mark top-left"),
        "exif_rotated_8": Case(exif_rotated(8), "phone8.jpg", None, (40, 60), False,
                               "upright: top half bright, red mark top-left"),
        "one_by_one": Case(encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"), "dot.png",
                           None, (1, 1), False),
        "strip_10000x20": Case(encode(noise(10_000, 20, seed=2), "JPEG"), "strip.jpg", None,
                               (10_000, 20), False),
        "animated_gif": Case(animated("GIF"), "spin.gif", UnsupportedFormat),
        "animated_webp": Case(animated("WEBP"), "spin.webp", UnsupportedFormat),
        "animated_png": Case(animated("PNG"), "spin.png", UnsupportedFormat, note="APNG"),
        "multipage_tiff": Case(animated("TIFF"), "pages.tif", UnsupportedFormat),
        "svg": Case(b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
                    b'width="10" height="10"><rect width="10" height="10"/></svg>\n',
                    "logo.svg", UnsupportedFormat),
        "plain_white": Case(encode(white, "JPEG", quality=95), "white.jpg", None, (320, 240),
                            False, "all background: the mask should come out empty"),
        "icc_wide_gamut": Case(
            encode(Image.new("RGB", (16, 16), (100, 150, 100)), "PNG",
                   icc_profile=adobe_like_icc()),
            "adobergb.png", None, (16, 16), False, "(100, 150, 100) in Adobe RGB (1998) primaries",
        ),
        "icc_unreadable": Case(
            encode(Image.new("RGB", (16, 16), (100, 150, 100)), "PNG", icc_profile=b"not icc"),
            "badprofile.png", None, (16, 16), False, "profile ignored by default",
        ),
        "webp_still": Case(encode(noise(40, 30, "RGBA", seed=4), "WEBP", lossless=True),
                           "still.webp", None, (40, 30), True),
        "bmp": Case(encode(noise(20, 10, seed=5), "BMP"), "old.bmp", None, (20, 10), False),
        "tiff_float": Case(encode(Image.new("F", (8, 4), 0.5), "TIFF"), "float.tif", None,
                           (8, 4), False, "0.5 everywhere"),
        "bilevel_1": Case(encode(Image.new("1", (9, 7), 1), "PNG"), "mono.png", None, (9, 7),
                          False, "all white"),
        "gif_still": Case(encode(Image.new("RGB", (12, 10), (0, 0, 255)), "GIF"), "still.gif",
                          UnsupportedFormat, note="GIF is outside the default allowlist"),
        "tiff_lab": Case(encode(lab, "TIFF"), "lab.tif", UnsupportedMode),
        "exif_no_byte_order_mark": Case(
            encode(top_bright(40, 60), "JPEG", exif=damaged_exif("no_byte_order_mark")),
            "phone.jpg", None, (40, 60), False, "orientation 1 and a warning: the EXIF is damaged",
        ),
        "png_phys_bad_crc": Case(png_bad_crc(encode(top_bright(40, 60), "PNG", dpi=(72, 72)),
                                             b"pHYs"),
                                 "scan.png", None, (40, 60), False,
                                 "the pHYs chunk is ignored with a warning"),
        "png_ihdr_bad_crc": Case(png_bad_crc(encode(top_bright(40, 60), "PNG"), b"IHDR"),
                                 "broken.png", CorruptImage),
    }
    return cases


CASES: dict[str, Case] = _build()
