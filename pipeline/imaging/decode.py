"""Safe decoding: untrusted bytes in, upright 8-bit sRGB pixels out, or a typed permanent error.

Pure: no file or network I/O, no global Pillow state written (the warnings filters are swapped,
under a lock, while headers are parsed: see :mod:`pipeline.imaging.metadata`). Entry points::

    probe(data, limits)                 ImageInfo, from the header only (no pixels decoded)
    check(info, limits)                 the header-level refusals decode would make
    decode(data, limits)                DecodedImage: RGBA uint8 [H, W, 4] for the composite
    decode_for_model(data, size, ...)   ModelInput: RGB uint8 [h, w, 3] at the model's size
    model_input(decoded, size)          the same from a full decode (the bytes decode once)
    model_input_from_rgba(rgba, size)   the same from any RGBA array

What is refused (each a ``PermanentError`` leaf):

* more bytes than ``max_bytes`` → ``ObjectTooLarge`` (checked before Pillow sees anything);
* empty data, text, or bytes no image reader recognises → ``NotAnImage``;
* a real image outside the ``formats`` allowlist → ``UnsupportedFormat``, naming the format. SVG is
  refused the same way (it is an image, but a vector one: rasterise it upstream). GIF is known but
  not allowed by default; add ``"GIF"`` to ``formats`` to accept still GIFs;
* damage to what the pixels depend on → ``CorruptImage``, naming the part: "PNG header is damaged:
  ...", "TIFF frame headers are damaged: ...", "JPEG image data is truncated or damaged: ...",
  "PNG image data (IDAT) is damaged: CRC mismatch ...", "PNG IHDR chunk is damaged (CRC mismatch)"
  (also PLTE, IEND). Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False (a truncated
  file would otherwise decode grey where data is missing); decoding refuses to run if it is set;
* more than one frame (animated GIF / WebP / APNG, multi-page TIFF) → ``UnsupportedFormat``.
  Taking the first frame of an animation would cut out a picture nobody chose. A JPEG carrying
  extra MPF pictures (camera previews) is not refused: its primary picture is decoded;
* width x height (read from the header) over ``max_pixels`` → ``TooManyPixels``, before any pixel
  buffer is allocated. The file is opened through the format's own Pillow class, so Pillow's
  global ``MAX_IMAGE_PIXELS`` guard does not run at open time and this limit is the one that
  decides. Pillow still runs that guard inside TIFF and GIF loading; with ``max_pixels`` at or
  below Pillow's default (89.5 MP) it cannot fire, and if it does its error (or its warning, where
  the process turns warnings into errors) is reported as ``TooManyPixels``;
* a pixel mode outside :data:`pipeline.imaging.colour.SUPPORTED_MODES` → ``UnsupportedMode``.

What is lenient (the image decodes; ``ImageInfo.warnings`` says what was tolerated, one sentence
each, which ``pipeline.process`` puts in the result's ``decode_warnings``):

* unreadable metadata (EXIF without its TIFF byte-order mark, a truncated IFD, an offset past the
  end; an orientation out of 1-8 or of the wrong type) in a JPEG, PNG eXIf, WebP, TIFF or XMP →
  orientation 1, the same whether or not warnings are errors (:mod:`pipeline.imaging.metadata`);
* a PNG ancillary chunk (pHYs, tEXt, iCCP, eXIf, ...) with a bad CRC or malformed data, before or
  after the image data → ignored; a PNG whose file ends after the image data
  (:mod:`pipeline.imaging.png_chunks`);
* an unusable ICC profile (a damaged iCCP chunk too) → sRGB assumed, ``colour``
  "invalid_ignored"; with ``DecodeLimits.invalid_icc="reject"`` it is a ``CorruptImage``.

Then: modes are converted as :mod:`pipeline.imaging.colour` documents, ICC profiles to sRGB, and the
EXIF orientation is applied, so widths and heights are upright (swapped for orientations 5-8).

For the model the decoder asks JPEG for DCT scaling (``Image.draft``: 1/2, 1/4 or 1/8 size, never
smaller than the model input), then resizes (LANCZOS) to exactly (h, w), ignoring the aspect ratio
as rembg does, because that is what the model was trained on. Transparent sources are composited
over white: the colour under fully transparent pixels is arbitrary (often black), and white is what
a person sees on a product page. rembg instead drops alpha; for opaque sources both agree.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from pipeline.errors import (
    CorruptImage,
    ObjectTooLarge,
    TooManyPixels,
    UnsupportedFormat,
    UnsupportedMode,
)
from pipeline.imaging.colour import (
    SUPPORTED_MODES,
    Colour,
    InvalidIcc,
    normalise_mode,
    to_srgb,
)
from pipeline.imaging.metadata import PILLOW_DAMAGE, recorded_warnings, stored_size, upright
from pipeline.imaging.metadata import orientation as read_orientation
from pipeline.imaging.pixels import rgba_array
from pipeline.imaging.png_chunks import screen
from pipeline.imaging.sniff import sniff

# Pillow's own class per allowed format: opening through it parses the header and nothing else.
_READERS: dict[str, type[ImageFile.ImageFile]] = {
    "JPEG": JpegImagePlugin.JpegImageFile,
    "PNG": PngImagePlugin.PngImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile,
    "TIFF": TiffImagePlugin.TiffImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
    "GIF": GifImagePlugin.GifImageFile,
}
MODEL_REDUCING_GAP = 2.0
"""Pillow's ``reducing_gap`` for the model input's resize (see ``_fit``)."""
DEFAULT_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "TIFF", "BMP"})
SUPPORTED_FORMATS: frozenset[str] = frozenset(_READERS)


@dataclass(frozen=True)
class DecodeLimits:
    """What the decoder accepts. Defaults suit product photos on a worker with a few GiB.

    ``max_pixels`` 50 MP covers 45 MP full-frame camera files (8192 x 5464) while keeping one
    decoded RGBA image at 200 MB; medium-format 100 MP files need it raised. ``max_bytes`` 256 MiB
    covers an uncompressed 8-bit RGBA TIFF at the pixel limit.
    """

    max_pixels: int = 50_000_000
    max_bytes: int = 256 * 1024 * 1024
    formats: frozenset[str] = DEFAULT_FORMATS
    invalid_icc: InvalidIcc = "ignore"

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.max_bytes < 1:
            raise ValueError("max_pixels and max_bytes must be positive")
        object.__setattr__(self, "formats", frozenset(f.upper() for f in self.formats))
        unknown = self.formats - SUPPORTED_FORMATS
        if unknown:
            raise ValueError(f"formats {sorted(unknown)} are not among {sorted(SUPPORTED_FORMATS)}")
        if self.invalid_icc not in ("ignore", "reject"):
            raise ValueError("invalid_icc must be 'ignore' or 'reject'")


DEFAULT_LIMITS = DecodeLimits()


@dataclass(frozen=True)
class ImageInfo:
    """What the header says; ``size`` is (width, height) as stored, before orientation.

    ``warnings`` says, one sentence each, what damage was tolerated: metadata that could not be
    read (the orientation then 1), a PNG chunk that was ignored, an ICC profile that was not used.
    """

    format: str
    mode: str
    size: tuple[int, int]
    frames: int
    orientation: int
    has_icc: bool
    warnings: tuple[str, ...] = ()

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) after the EXIF orientation is applied."""
        w, h = self.size
        return (h, w) if self.orientation >= 5 else (w, h)


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A full-size upright sRGB image for the composite.

    ``rgba`` is [H, W, 4] uint8, read-only; alpha is 255 where the source had none. ``size`` is
    (width, height) of ``rgba``, which is ``info.upright_size`` unless ``draft_to`` allowed less.
    """

    rgba: npt.NDArray[np.uint8] = field(repr=False)
    info: ImageInfo
    has_alpha: bool
    colour: Colour

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.rgba.shape[1]), int(self.rgba.shape[0]))


@dataclass(frozen=True, eq=False)
class ModelInput:
    """``pixels`` is [h, w, 3] uint8 RGB at exactly the model's (h, w)."""

    pixels: npt.NDArray[np.uint8] = field(repr=False)
    info: ImageInfo
    colour: Colour


@contextmanager
def _pillow_errors(what: str) -> Iterator[None]:
    """Translate Pillow's exceptions, once, into the error hierarchy."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels(f"Pillow's own pixel guard refused the image: {exc}") from exc
    except PILLOW_DAMAGE as exc:
        raise CorruptImage(f"{what}: {exc}") from exc


def _open(
    data: bytes, limits: DecodeLimits, notes: list[str], *, pixels: bool = True
) -> tuple[ImageFile.ImageFile, frozenset[str]]:
    """The image with its header parsed, and the PNG chunk types dropped as damaged.

    ``pixels=False`` screens a PNG's chunks up to its image data only (what ``probe`` reads).
    """
    if len(data) > limits.max_bytes:
        raise ObjectTooLarge(f"{len(data)} bytes is over the limit of {limits.max_bytes}")
    fmt = sniff(data)
    if fmt not in limits.formats:
        raise UnsupportedFormat(
            f"{fmt} is not an allowed format (allowed: {', '.join(sorted(limits.formats))})"
        )
    dropped: frozenset[str] = frozenset()
    if fmt == "PNG":
        screened = screen(data, image_data=pixels)
        data, dropped = screened.data, screened.dropped
        notes.extend(screened.warnings)
    with _pillow_errors(f"{fmt} header is damaged"), recorded_warnings(fmt, notes):
        return _READERS[fmt](io.BytesIO(data)), dropped


def _undecodable_icc(im: ImageFile.ImageFile) -> bool:
    """A PNG iCCP chunk whose zlib data Pillow could not inflate (it then stores None)."""
    return im.format == "PNG" and "icc_profile" in im.info and not im.info["icc_profile"]


def _info(im: ImageFile.ImageFile, notes: list[str]) -> ImageInfo:
    fmt = str(im.format)
    # Counting frames walks the file's frame headers (TIFF IFDs, WebP/APNG chunks).
    with _pillow_errors(f"{fmt} frame headers are damaged"), recorded_warnings(fmt, notes):
        frames = int(getattr(im, "n_frames", 1))
    orientation = read_orientation(im, notes)
    if _undecodable_icc(im):
        notes.append("PNG iCCP chunk's profile cannot be decompressed; it was ignored "
                     "(no ICC profile: sRGB is assumed)")
    return ImageInfo(
        format=fmt,
        mode=im.mode,
        size=stored_size(im),
        frames=frames,
        orientation=orientation,
        has_icc=bool(im.info.get("icc_profile")),
        warnings=tuple(dict.fromkeys(notes)),
    )


def check(info: ImageInfo, limits: DecodeLimits = DEFAULT_LIMITS) -> None:
    """Refuse, from the header alone, what :func:`decode` would refuse: pixels, frames, mode."""
    if info.pixels > limits.max_pixels:
        w, h = info.size
        raise TooManyPixels(f"{w}x{h} = {info.pixels} pixels is over the limit of "
                            f"{limits.max_pixels}")
    if info.frames > 1:
        raise UnsupportedFormat(
            f"{info.format} with {info.frames} frames (animated or multi-page) is not supported"
        )
    if info.mode not in SUPPORTED_MODES:
        raise UnsupportedMode(f"pixel mode {info.mode!r} is not supported")


def probe(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> ImageInfo:
    """Describe the image from its header, without decoding pixels.

    Raises what stops the description (``ObjectTooLarge``, ``NotAnImage``, ``UnsupportedFormat``
    for a format outside the allowlist, ``CorruptImage``) but not what :func:`check` refuses, so
    a caller can see the size of an image that is too large. ``warnings`` covers the header only.
    """
    notes: list[str] = []
    im, _ = _open(data, limits, notes, pixels=False)
    return _info(im, notes)


def _colour(
    im: Image.Image, lost_icc: bool, limits: DecodeLimits, notes: list[str]
) -> tuple[Image.Image, Colour]:
    """Modes normalised, ICC applied; a profile lost with its damaged PNG chunk is invalid."""
    icc = im.info.get("icc_profile")
    rgb, colour = to_srgb(normalise_mode(im), icc if isinstance(icc, bytes) else None,
                          limits.invalid_icc)
    if colour == "invalid_ignored":
        notes.append("The embedded ICC profile is unreadable or does not fit the pixels; it was "
                     "ignored (sRGB is assumed)")
    return rgb, "invalid_ignored" if lost_icc else colour


def _load(
    data: bytes, limits: DecodeLimits, draft_to: tuple[int, int] | None
) -> tuple[Image.Image, ImageInfo, Colour]:
    """Header, checks, pixels (DCT-scaled where allowed), modes, colour, orientation."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")
    notes: list[str] = []
    im, dropped = _open(data, limits, notes)
    info = _info(im, notes)
    check(info, limits)
    lost_icc = "iCCP" in dropped or _undecodable_icc(im)
    if lost_icc and limits.invalid_icc == "reject":
        raise CorruptImage("PNG iCCP chunk (the ICC profile) is damaged, and invalid ICC "
                           "profiles are refused")
    if draft_to is not None and info.format == "JPEG":
        w, h = draft_to
        # draft works on the stored picture, before orientation swaps the axes.
        with _pillow_errors("JPEG header is damaged"):
            im.draft("RGB", (h, w) if info.orientation >= 5 else (w, h))
    data_label = "PNG image data (IDAT)" if info.format == "PNG" else f"{info.format} image data"
    # Pillow's TIFF loader parses the EXIF IFDs again (and, if new enough, applies orientation).
    tiff = recorded_warnings("TIFF", notes) if info.format == "TIFF" else nullcontext()
    with _pillow_errors(f"{data_label} is truncated or damaged"), tiff:
        im.load()
    orientation = info.orientation
    if info.format == "PNG":
        # An eXIf chunk may follow the pixel data; it is read only now.
        orientation = read_orientation(im, notes)
    if im.size[0] * im.size[1] > limits.max_pixels:
        # A GIF may grow its canvas to fit its frame: the limit applies to what was allocated.
        raise TooManyPixels(f"{info.format} canvas grew to {im.size[0]}x{im.size[1]}")
    rgb, colour = _colour(im, lost_icc, limits, notes)
    info = replace(info, orientation=orientation, warnings=tuple(dict.fromkeys(notes)))
    return upright(rgb, im, orientation), info, colour


def decode(
    data: bytes,
    limits: DecodeLimits = DEFAULT_LIMITS,
    *,
    draft_to: tuple[int, int] | None = None,
) -> DecodedImage:
    """The full upright sRGB image as RGBA for the composite.

    ``draft_to`` (width, height), when given, lets a JPEG decode at 1/2, 1/4 or 1/8 size as long
    as the result is no smaller than that (for an output capped below the source size); the
    caller resizes to the exact size it needs. Other formats ignore it.
    """
    im, info, colour = _load(data, limits, draft_to)
    return DecodedImage(rgba=rgba_array(im), info=info, has_alpha=im.mode == "RGBA",
                        colour=colour)


def _over_white(im: Image.Image) -> npt.NDArray[np.uint8]:
    if im.mode == "RGB":
        return np.asarray(im)
    if im.mode == "RGBX":
        return np.asarray(im.convert("RGB"))
    rgba = np.asarray(im).astype(np.uint16)
    alpha = rgba[..., 3:4]
    return ((rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def _fit(im: Image.Image, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    h, w = size
    if im.size != (w, h):
        # Pillow resizes RGBA premultiplied, so compositing after the resize equals before it.
        # LANCZOS, as rembg resizes: with a cheaper filter the masks of fine, busy pictures
        # drift from rembg's (IoU 0.84 instead of 0.93 on the worst test image). The
        # reducing gap lets Pillow box-reduce first (2048 -> 682 by 3 for a 320 model, then
        # LANCZOS), which keeps the cost small: gap 2 instead of 3 costs 13 instead of 21 ms
        # at 2048x2048 with u2netp masks at IoU 0.998 (mean; min 0.982) of gap 3's on 24
        # product and DAVIS photos (issue 16).
        im = im.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=MODEL_REDUCING_GAP)
    return _over_white(im)


def _model_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = size
    if h < 1 or w < 1:
        raise ValueError(f"model input size must be positive, got {size}")
    return int(h), int(w)


def decode_for_model(
    data: bytes, size: tuple[int, int], limits: DecodeLimits = DEFAULT_LIMITS
) -> ModelInput:
    """RGB uint8 [h, w, 3] at the model's ``size`` = (h, w), JPEG decoded DCT-scaled.

    Use this when the full image is not needed yet (or at all); when it is, decode once with
    :func:`decode` and call :func:`model_input_from_rgba`.
    """
    h, w = _model_size(size)
    im, info, colour = _load(data, limits, draft_to=(w, h))
    return ModelInput(pixels=_fit(im, (h, w)), info=info, colour=colour)


def model_input_from_rgba(
    rgba: npt.NDArray[np.uint8], size: tuple[int, int], *, opaque: bool | None = None
) -> npt.NDArray[np.uint8]:
    """RGB uint8 [h, w, 3] at ``size`` = (h, w) from a decoded RGBA [H, W, 4] uint8 array.

    ``opaque`` (alpha all 255) is looked up when not given; an opaque image is resized without
    the premultiplied-alpha round trip, which costs more than the resize itself.
    """
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected [H, W, 4] uint8 RGBA, got {rgba.shape} {rgba.dtype}")
    model_size = _model_size(size)
    if opaque is None:
        opaque = bool((rgba[..., 3] == 255).all())
    if not opaque:
        return _fit(Image.fromarray(rgba), model_size)
    pixels = np.ascontiguousarray(rgba)
    # Read as RGBX (the fourth byte is padding), sharing the array's memory: no copy, no alpha.
    height, width = pixels.shape[:2]
    rgbx = Image.frombuffer("RGBX", (width, height), pixels, "raw", "RGBX", 0, 1)
    return _fit(rgbx, model_size)


def model_input(decoded: DecodedImage, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """RGB uint8 [h, w, 3] at ``size`` = (h, w) from a full decode, so the bytes decode once."""
    return model_input_from_rgba(decoded.rgba, size, opaque=not decoded.has_alpha)
