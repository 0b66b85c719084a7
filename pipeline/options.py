"""Output options: what the caller wants back, validated once and written in one canonical form.

Names follow remove.bg's API where they fit. Every field, its default and what it accepts::

    format        "png"   png | webp | jpg ("jpeg" is read as jpg). PNG and WebP are lossless.
    channels      "rgba"  rgba: the cut-out; alpha: the mask alone, as an 8-bit grey PNG
                          (so channels=alpha needs format=png, and takes no bg_color).
    bg_color      None    a colour to flatten the cut-out over; the output is then opaque RGB.
                          "fff", "ffffff", "#fff", "#FFFFFF", or one of the 16 CSS basic
                          colour names in NAMED_COLOURS (plus "grey"). No alpha: 4 and 8
                          digit hex are refused. format=jpg without bg_color flattens over
                          white, as remove.bg does; the canonical form then says bg_color
                          "ffffff", so both spellings are one job.
    crop          False   crop to the subject's bounding box (see pipeline.subject for the bbox).
    crop_margin   "0px"   margin around the cropped subject, one value for all four sides:
                          "12px" / "12" / 12 (pixels, at most MAX_MARGIN_PX), or "5%" (of the
                          subject's own width for left/right and height for top/bottom, at most
                          50%). Clamped to the image: the output never grows past the source.
                          Without crop it has no effect and is normalised to "0px".
    max_side      None    the longest output side in pixels; larger outputs are downscaled,
                          keeping the aspect ratio; smaller ones are never enlarged.
    subject       "all"   all: keep the mask as the model gave it (what rembg does);
                          main: keep the main subject(s) only (see pipeline.subject).
    edges         "keep"  keep: soft-alpha pixels keep the source's colour, old background and all;
                          clean: their colour is replaced by the estimated foreground colour
                          (foreground estimation, "colour decontamination"; see
                          pipeline.imaging.edges). Alpha and opaque pixels are unchanged.
                          With channels=alpha there is no colour: normalised to "keep".
                          refine: alpha is re-estimated along the mask's outline (guided
                          filter over a trimap; pipeline.imaging.refine), then cleaned as
                          clean. With channels=alpha only the alpha is refined.
    strict_empty  False   True: an empty mask fails the job with EmptyMask (dead letter);
                          False: it succeeds with a transparent image and metadata empty=true.
    layers        False   True: the result lists every part of the mask (id, bbox, area, role
                          main/kept/dropped, reason, portability; see pipeline.subject), the
                          model-size mask is stored beside the output, and the parts can be
                          switched on and off later without the model (pipeline.recompose).
                          The output is then made from that stored (8-bit) mask.

``OutputOptions.parse(mapping)`` raises :class:`pipeline.errors.InvalidOptions` naming the field.
``normalised()`` is the canonical dict that the job's idempotency key hashes: two spellings of
the same request give the same dict, and ``parse(o.normalised()) == o``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.errors import InvalidOptions

Format = Literal["png", "webp", "jpg"]
Channels = Literal["rgba", "alpha"]
SubjectPolicy = Literal["all", "main"]
Edges = Literal["keep", "clean", "refine"]
MarginUnit = Literal["px", "%"]
Rgb = tuple[int, int, int]

MAX_MARGIN_PX = 10_000
MAX_MARGIN_PERCENT = 50.0
MAX_SIDE_LIMIT = 100_000
JPG_DEFAULT_BG: Rgb = (255, 255, 255)

NAMED_COLOURS: Mapping[str, Rgb] = {
    "black": (0, 0, 0),
    "silver": (192, 192, 192),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "white": (255, 255, 255),
    "maroon": (128, 0, 0),
    "red": (255, 0, 0),
    "purple": (128, 0, 128),
    "fuchsia": (255, 0, 255),
    "green": (0, 128, 0),
    "lime": (0, 255, 0),
    "olive": (128, 128, 0),
    "yellow": (255, 255, 0),
    "navy": (0, 0, 128),
    "blue": (0, 0, 255),
    "teal": (0, 128, 128),
    "aqua": (0, 255, 255),
}

_FORMATS: Mapping[str, Format] = {"png": "png", "webp": "webp", "jpg": "jpg", "jpeg": "jpg"}
_CONTENT_TYPES: Mapping[Format, str] = {
    "png": "image/png",
    "webp": "image/webp",
    "jpg": "image/jpeg",
}
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_DIGITS = re.compile(r"[0-9]{1,9}")  # ASCII only: str.isdigit() also takes '²', int() not
_HEX = re.compile(r"#?([0-9a-f]{3}|[0-9a-f]{6})")
_MARGIN = re.compile(r"(\d+(?:\.\d+)?)\s*(px|%)?")
_FIELDS = (
    "format",
    "channels",
    "bg_color",
    "crop",
    "crop_margin",
    "max_side",
    "subject",
    "edges",
    "strict_empty",
    "layers",
)


@dataclass(frozen=True)
class Margin:
    """A crop margin: ``value`` pixels, or ``value`` percent of the subject's side."""

    value: float
    unit: MarginUnit = "px"

    def pixels(self, side: int) -> int:
        """The margin in pixels for a subject side of ``side`` pixels."""
        if self.unit == "px":
            return int(self.value)
        return round(side * self.value / 100.0)

    def canonical(self) -> str:
        if self.unit == "px":
            return f"{int(self.value)}px"
        # 5.0 -> "5%", 2.5 -> "2.5%": one spelling per value
        return f"{self.value:g}%"


@dataclass(frozen=True)
class OutputOptions:
    format: Format = "png"
    channels: Channels = "rgba"
    bg_color: Rgb | None = None
    crop: bool = False
    crop_margin: Margin = Margin(0)
    max_side: int | None = None
    subject: SubjectPolicy = "all"
    edges: Edges = "keep"
    strict_empty: bool = False
    layers: bool = False

    def __post_init__(self) -> None:
        # The dataclass can be built directly too; the cross-field rules hold either way.
        if self.channels == "alpha" and self.format != "png":
            raise InvalidOptions("channels: 'alpha' is written as a grey PNG; use format=png")
        if self.channels == "alpha" and self.bg_color is not None:
            raise InvalidOptions("bg_color: has no meaning with channels=alpha")
        if self.format == "jpg" and self.bg_color is None:
            object.__setattr__(self, "bg_color", JPG_DEFAULT_BG)
        if self.channels == "alpha" and self.edges == "clean":
            object.__setattr__(self, "edges", "keep")
        if not self.crop and self.crop_margin != Margin(0):
            object.__setattr__(self, "crop_margin", Margin(0))

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> OutputOptions:
        """Validate a mapping of option values (from JSON, a query string or CLI flags)."""
        raw = dict(raw or {})
        unknown = sorted(set(raw) - set(_FIELDS))
        if unknown:
            raise InvalidOptions(f"unknown option(s): {', '.join(map(repr, unknown))}")
        return cls(
            format=_parse_format(raw.get("format")),
            channels=_parse_choice("channels", raw.get("channels"), ("rgba", "alpha"), "rgba"),
            bg_color=_parse_colour(raw.get("bg_color")),
            crop=_parse_bool("crop", raw.get("crop")),
            crop_margin=_parse_margin(raw.get("crop_margin")),
            max_side=_parse_max_side(raw.get("max_side")),
            subject=_parse_choice("subject", raw.get("subject"), ("all", "main"), "all"),
            edges=_parse_choice("edges", raw.get("edges"), ("keep", "clean", "refine"),
                                 "keep"),
            strict_empty=_parse_bool("strict_empty", raw.get("strict_empty")),
            layers=_parse_bool("layers", raw.get("layers")),
        )

    def normalised(self) -> dict[str, Any]:
        """The canonical, JSON-ready form: one spelling per value, and every field present,
        but for fields added after jobs were first recorded (``edges``, ``layers``), which
        appear only when they are not at their default: so the idempotency keys, options
        hashes and embedded run ids of jobs recorded before them stay the same."""
        later: dict[str, Any] = {"edges": self.edges} if self.edges != "keep" else {}
        if self.layers:
            later["layers"] = True
        return {
            "format": self.format,
            "channels": self.channels,
            "bg_color": None if self.bg_color is None else _hex(self.bg_color),
            "crop": self.crop,
            "crop_margin": self.crop_margin.canonical(),
            "max_side": self.max_side,
            "subject": self.subject,
            "strict_empty": self.strict_empty,
            **later,
        }

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self.format]

    @property
    def extension(self) -> str:
        """The file extension with its dot: ``.png``, ``.webp``, ``.jpg``."""
        return f".{self.format}"

    @property
    def output_mode(self) -> Literal["RGBA", "RGB", "L"]:
        """The pixel mode of the composite: mask only, flattened, or a cut-out with alpha."""
        if self.channels == "alpha":
            return "L"
        return "RGB" if self.bg_color is not None else "RGBA"


def _hex(colour: Rgb) -> str:
    return "".join(f"{channel:02x}" for channel in colour)


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidOptions(f"{name}: expected a string, got {type(value).__name__}")
    return value.strip().lower()


def _parse_format(value: object) -> Format:
    if value is None:
        return "png"
    text = _text("format", value)
    if text not in _FORMATS:
        raise InvalidOptions(f"format: {value!r} is not one of png, webp, jpg")
    return _FORMATS[text]


def _parse_choice(name: str, value: object, choices: tuple[str, ...], default: str) -> Any:
    if value is None:
        return default
    text = _text(name, value)
    if text not in choices:
        raise InvalidOptions(f"{name}: {value!r} is not one of {', '.join(choices)}")
    return text


def _parse_bool(name: str, value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise InvalidOptions(f"{name}: {value!r} is not a boolean (true/false)")


def _parse_colour(value: object) -> Rgb | None:
    if value is None:
        return None
    text = _text("bg_color", value)
    if text in NAMED_COLOURS:
        return NAMED_COLOURS[text]
    match = _HEX.fullmatch(text)
    if match is None:
        raise InvalidOptions(
            f"bg_color: {value!r} is not a colour (use 'rgb' or 'rrggbb' hex, or a CSS basic name)"
        )
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))


def _parse_margin(value: object) -> Margin:
    if value is None:
        return Margin(0)
    if isinstance(value, bool):
        raise InvalidOptions(f"crop_margin: {value!r} is not a margin like '10px' or '5%'")
    text = str(value).strip().lower() if isinstance(value, int) else _text("crop_margin", value)
    match = _MARGIN.fullmatch(text)
    if match is None:
        raise InvalidOptions(f"crop_margin: {value!r} is not a margin like '10px' or '5%'")
    number, unit = float(match.group(1)), match.group(2) or "px"
    if unit == "%":
        if number > MAX_MARGIN_PERCENT:
            raise InvalidOptions(f"crop_margin: {value!r} is over {MAX_MARGIN_PERCENT:g}%")
        return Margin(0) if number == 0 else Margin(number, "%")
    if not number.is_integer():
        raise InvalidOptions(f"crop_margin: {value!r} must be a whole number of pixels")
    if number > MAX_MARGIN_PX:
        raise InvalidOptions(f"crop_margin: {value!r} is over {MAX_MARGIN_PX}px")
    return Margin(number, "px")


def _parse_max_side(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptions(f"max_side: {value!r} is not a whole number of pixels")
    if not 1 <= value <= MAX_SIDE_LIMIT:
        raise InvalidOptions(f"max_side: {value} is not between 1 and {MAX_SIDE_LIMIT}")
    return value
