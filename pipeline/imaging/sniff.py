"""Name an image format from its first bytes, before any decoder is chosen.

Signatures decide, not file names or content types (a text file named ``.jpg`` is text). The
formats Clipline can decode are recognised here; so are common image formats it refuses (SVG,
HEIF/AVIF, JPEG 2000, ICO, PSD, ...), so the error names them. Bytes with no known signature are
offered to Pillow's identification as a last resort; what it cannot name is not an image.
"""

from __future__ import annotations

import io
import re
import struct

from PIL import Image, UnidentifiedImageError

from pipeline.errors import NotAnImage

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"\xff\x4f\xff\x51", "JPEG2000"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
    (b"\xff\x0a", "JPEGXL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEGXL"),
    (b"qoif", "QOI"),
)
# "BM" alone is too weak (text can start with it): the DIB header size must be a known one.
_BMP_DIB_HEADERS = {struct.pack("<I", n) for n in (12, 16, 40, 52, 56, 64, 108, 124)}
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
# An SVG document: optional BOM, XML declaration, comments and doctype, then an <svg element.
_SVG = re.compile(
    rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*|<!DOCTYPE[^>]*>\s*)*<svg[\s>]", re.S | re.I
)
_SVG_HEAD = 4096


def _container(data: bytes) -> str | None:
    if data[:2] == b"BM" and data[14:18] in _BMP_DIB_HEADERS:
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _AVIF_BRANDS:
            return "AVIF"
        if brand in _HEIF_BRANDS:
            return "HEIF"
    head = data[:_SVG_HEAD].removeprefix(b"\xef\xbb\xbf")
    if _SVG.match(head):
        return "SVG"
    return None


def _pillow_name(data: bytes) -> str | None:
    """Pillow's name for bytes no signature matched, from header parsing only."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return str(im.format) if im.format else None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow recognised an image before its size guard refused it; the name is lost.
        return "UNKNOWN-LARGE"
    except (
        UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, EOFError,
        struct.error, UserWarning,
    ):
        return None


def sniff(data: bytes) -> str:
    """The format name (Pillow's spelling where Pillow has one); ``NotAnImage`` otherwise."""
    if not data:
        raise NotAnImage("the data is empty (0 bytes)")
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    found = _container(data) or _pillow_name(data)
    if found is None:
        raise NotAnImage(f"no image format recognised in the first bytes {data[:16]!r}")
    return found
