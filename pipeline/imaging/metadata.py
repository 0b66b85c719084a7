"""Metadata read leniently: damage to it is a warning on the image, never a refusal.

Pillow parses metadata while it opens a file (TIFF tags; a JPEG's EXIF block, for its DPI) and
reports what it skips (a truncated IFD, a tag pointing past the end) with a ``UserWarning``. Where
the process turns warnings into errors (the tests do) that warning would abort the open, so the
same file would decode or not depending on the process's warning filters. Instead,
:func:`recorded_warnings` records them as sentences on the image, whatever the filters say.

Orientation (EXIF tag 0x0112; TIFF tag 274 for a TIFF; ``tiff:Orientation`` in an XMP packet) is
1-8 as EXIF and TIFF 6.0 define it; :func:`orientation` reads anything else (a value out of range
or of the wrong type, an EXIF block without its TIFF byte-order mark, a truncated IFD, an offset
past the end) as 1, the picture as stored, and records why.
"""

from __future__ import annotations

import re
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, ImageFile, TiffImagePlugin

# Vendor exceptions that mean "these bytes are damaged" once the format is known. Outside
# recorded_warnings (pixel decoding), a UserWarning the process turned into an error is damage too.
PILLOW_DAMAGE = (
    OSError, SyntaxError, ValueError, TypeError, EOFError, IndexError, KeyError, struct.error,
    UserWarning,
)

_ORIENTATION_TAG = 0x0112
_WIDTH_TAG, _HEIGHT_TAG = 256, 257  # TIFF ImageWidth, ImageLength
_EXIF_PREFIX = b"Exif\x00\x00"  # JPEG APP1 and Pillow's PNG/WebP "exif" start with it
_XMP_ORIENTATION = re.compile(r'tiff:Orientation(="|>)([0-9])')
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# catch_warnings swaps process-wide state (per thread only from Python 3.14): one swap at a time.
_WARNINGS_LOCK = threading.RLock()


@contextmanager
def recorded_warnings(fmt: str, notes: list[str]) -> Iterator[None]:
    """Append each ``UserWarning`` Pillow emits inside the block to ``notes`` ("JPEG metadata is
    damaged and was partly ignored: {message}"); warnings of other kinds are passed on as they were.

    Meant for header and metadata parsing (microseconds; also a TIFF's pixel load, in which Pillow
    re-reads the EXIF IFDs): decoding threads take turns here, and a ``UserWarning`` another
    thread emits inside the window is recorded here too.
    """
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            notes.extend(f"{fmt} metadata is damaged and was partly ignored: "
                         + " ".join(str(item.message).split())
                         for item in caught if issubclass(item.category, UserWarning))
    for item in caught:
        if not issubclass(item.category, UserWarning):
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


class _DamagedExif(ValueError):
    """EXIF data that Pillow would misread, or name wrongly."""


def _xmp_orientation(xmp: object) -> int | None:
    if not xmp:
        return None
    text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp)
    match = _XMP_ORIENTATION.search(text)
    return int(match[2]) if match else None


def _stored(im: ImageFile.ImageFile) -> tuple[str, object]:
    """(where it came from, the raw value or None): TIFF tag, EXIF block, else XMP packet."""
    if isinstance(im, TiffImagePlugin.TiffImageFile):
        return "TIFF", im.tag_v2.get(_ORIENTATION_TAG)
    raw = im.info.get("exif")
    if isinstance(raw, bytes):
        # Pillow puts "Exif\0\0" before a PNG eXIf chunk, whose writer may have put one there
        # too; Exif.load skips one or two. The TIFF data after them starts with its byte order.
        tiff = raw.removeprefix(_EXIF_PREFIX).removeprefix(_EXIF_PREFIX)
        if tiff[:2] not in (b"II", b"MM", b""):
            raise _DamagedExif(f"no TIFF byte-order mark: it starts {tiff[:4]!r}")
        exif = Image.Exif()
        exif.load(raw)
        value = exif.get(_ORIENTATION_TAG)
        if value is not None:
            return "EXIF", value
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    return "XMP", _xmp_orientation(xmp)


def stored_size(im: ImageFile.ImageFile) -> tuple[int, int]:
    """(width, height) as stored, before orientation: newer Pillow reports a TIFF's upright."""
    w, h = int(im.size[0]), int(im.size[1])
    if not isinstance(im, TiffImagePlugin.TiffImageFile) or w == h:
        return w, h
    swapped = (im.tag_v2.get(_WIDTH_TAG), im.tag_v2.get(_HEIGHT_TAG)) == (h, w)
    return (h, w) if swapped else (w, h)


def upright(picture: Image.Image, source: ImageFile.ImageFile, value: int) -> Image.Image:
    """``picture`` (decoded from ``source``) turned by orientation ``value`` 1-8, unless loading
    ``source`` did that already: newer Pillow does for TIFF, and then drops the tag (also when
    its value was out of range, which reads as 1 anyway)."""
    done = isinstance(source, TiffImagePlugin.TiffImageFile) and (
        _ORIENTATION_TAG not in source.tag_v2
    )
    method = None if done else _TRANSPOSE.get(value)
    return picture if method is None else picture.transpose(method)


def orientation(im: ImageFile.ImageFile, notes: list[str]) -> int:
    """Orientation 1-8 from what Pillow has parsed so far (no pixel is decoded); 1 when absent.

    A value that cannot be read, or one outside 1-8, is read as 1 and a sentence saying why is
    appended to ``notes``. ``getexif`` is not used: PNG's loads the whole image to look for a late
    eXIf chunk.
    """
    try:
        with recorded_warnings(str(im.format), notes):
            source, value = _stored(im)
    except PILLOW_DAMAGE as exc:
        where = "TIFF tags are" if isinstance(im, TiffImagePlugin.TiffImageFile) else (
            "EXIF data is")
        notes.append(f"{where} damaged ({exc}); orientation 1 assumed")
        return 1
    if value is None:
        return 1
    if isinstance(value, int) and value in range(1, 9):
        return value
    notes.append(f"{source} orientation {value!r} is not 1-8; orientation 1 assumed")
    return 1
