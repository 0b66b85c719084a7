"""remove.bg's request fields, mapped onto Clipline's output options. Pure.

``POST /v1.0/removebg`` (``pipeline.api.removebg``) takes remove.bg's request shape. Every field
remove.bg documents is here, in one of three kinds:

=================  ============================================================================
mapped             ``format`` (auto, png, jpg/jpeg; webp as Clipline's own extra), ``channels``
                   (rgba, alpha), ``bg_color``, ``crop``, ``crop_margin`` (one value, px or %)
accepted, ignored  ``size`` (every value: the output keeps the source's resolution),
                   ``type`` and ``type_level`` (one model for every image),
                   ``semitransparency`` (alpha is always soft), and the values that ask for
                   nothing: ``roi`` of the whole image, ``scale=original``,
                   ``position=original``, ``add_shadow=false``
refused (400)      ``format=zip``, ``bg_image_url``, ``bg_image_file``, ``add_shadow=true``,
                   ``shadow_type``, ``shadow_opacity``, any other ``roi``, ``scale``,
                   ``position``, a ``crop_margin`` of several values, and any unknown field
=================  ============================================================================

``format=auto`` is remove.bg's "png when the result has transparency, else jpg": jpg when a
``bg_color`` flattens an rgba cut-out, else png. The image source (``image_file``,
``image_file_b64``, ``image_url``) is the API module's; ``source_fields`` names them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import InvalidOptions
from pipeline.options import OutputOptions

SOURCE_FIELDS = ("image_file", "image_file_b64", "image_url")

SIZES = frozenset({"auto", "preview", "small", "regular", "medium", "hd", "full", "4k", "50mp"})
TYPES = frozenset({"auto", "person", "product", "animal", "car", "car_interior", "car_part",
                   "transportation", "graphics", "other"})
TYPE_LEVELS = frozenset({"none", "latest", "1", "2"})
FORMATS = {"auto": "auto", "png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp"}

# Why each ignored field changes nothing (shown in the README's table and in the answer's
# ``X-Clipline-Ignored`` header).
IGNORED_WHY = {
    "size": "the cut-out keeps the source's resolution",
    "type": "one model for every kind of image",
    "type_level": "one model for every kind of image",
    "semitransparency": "alpha is always soft",
    "roi": "the whole image is the region",
    "scale": "original: the subject is not scaled",
    "position": "original: the subject is not moved",
    "add_shadow": "false: no shadow",
}
REFUSED_WHY = {
    "bg_image_url": "Clipline never fetches arbitrary URLs; use bg_color",
    "bg_image_file": "background images are not supported; use bg_color",
    "shadow_type": "shadows are not supported",
    "shadow_opacity": "shadows are not supported",
}
KNOWN = frozenset({*SOURCE_FIELDS, "format", "channels", "bg_color", "crop", "crop_margin",
                   *IGNORED_WHY, *REFUSED_WHY})
_WHOLE_START = frozenset({"0", "0px", "0%"})
_WHOLE_END = frozenset({"100%"})
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})
_SPACE = re.compile(r"\s+")


class Refused(ValueError):
    """A request remove.bg's API would take but Clipline cannot honour, or a malformed one:
    answered ``400`` with remove.bg's error shape (``code``, ``title``, ``detail``)."""

    def __init__(self, code: str, title: str, detail: str = "") -> None:
        super().__init__(detail or title)
        self.code, self.title, self.detail = code, title, detail


@dataclass(frozen=True)
class Mapped:
    """The request as Clipline options, and the fields accepted without effect."""

    options: OutputOptions
    ignored: tuple[str, ...]


def text_of(name: str, value: object) -> str | None:
    """A field's value as trimmed text; None when absent (JSON null). Numbers and booleans,
    which a JSON body may carry, are read as their text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise Refused("invalid_parameter", f"{name} must be a string",
                      f"{name}: got {type(value).__name__}")
    return value.strip()


def map_fields(fields: Mapping[str, object]) -> Mapped:
    """remove.bg fields (source fields aside) → Clipline's options, or ``Refused``."""
    unknown = sorted(set(fields) - KNOWN)
    if unknown:
        raise Refused("unknown_parameter", "Unknown parameter",
                      f"not a remove.bg parameter: {', '.join(unknown)}")
    values = {name: text_of(name, raw) for name, raw in fields.items()
              if name not in SOURCE_FIELDS}
    present = {name: value for name, value in values.items() if value not in (None, "")}
    for name in REFUSED_WHY:
        if name in present:
            raise Refused("unsupported_parameter", f"{name} is not supported",
                          REFUSED_WHY[name])
    _check_ignored(present)
    options = _options(present)
    ignored = tuple(sorted(name for name in present if name in IGNORED_WHY))
    return Mapped(options, ignored)


def s3_source(url: str) -> tuple[str, str]:
    """``image_url`` as (bucket, key): only ``s3://bucket/key``. Clipline never fetches an
    http(s) URL (a server-side request on a caller's behalf); the allowlist is the caller's."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() != "s3":
        raise Refused("unsupported_parameter", "image_url must be an s3:// URL",
                      "Clipline reads only s3://bucket/key URLs inside the tenant's allowed "
                      "sources; upload the image as image_file or image_file_b64")
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise Refused("invalid_parameter", "image_url is not valid",
                      f"expected s3://bucket/key, got {url[:200]!r}")
    return bucket, key


def _check_ignored(present: Mapping[str, str]) -> None:
    """Ignored fields still take only remove.bg's values; those that ask for a change are
    refused rather than dropped silently."""
    _one_of("size", present.get("size"), SIZES)
    _one_of("type", present.get("type"), TYPES)
    _one_of("type_level", present.get("type_level"), TYPE_LEVELS)
    _flag("semitransparency", present.get("semitransparency"))
    if _flag("add_shadow", present.get("add_shadow")):
        raise Refused("unsupported_parameter", "add_shadow is not supported",
                      "shadows are not supported; send add_shadow=false or leave it out")
    for name in ("scale", "position"):
        value = present.get(name)
        if value is not None and value.lower() != "original":
            raise Refused("unsupported_parameter", f"{name} is not supported",
                          f"{name}: only 'original' (the default); got {value!r}")
    roi = present.get("roi")
    if roi is not None and not _whole_image(roi):
        raise Refused("unsupported_parameter", "roi is not supported",
                      f"roi: only the whole image ('0% 0% 100% 100%'); got {roi!r}")


def _options(present: Mapping[str, str]) -> OutputOptions:
    requested = (present.get("format") or "auto").lower()
    if requested == "zip":
        raise Refused("unsupported_parameter", "format=zip is not supported",
                      "use format=png (the cut-out with alpha) or channels=alpha (the mask)")
    fmt = FORMATS.get(requested)
    if fmt is None:
        raise Refused("invalid_parameter", "format is not valid",
                      f"format: {requested!r} is not one of auto, png, jpg, zip")
    channels = (present.get("channels") or "rgba").lower()
    bg_color = present.get("bg_color")
    if fmt == "auto":
        fmt = "jpg" if bg_color is not None and channels == "rgba" else "png"
    margin = present.get("crop_margin")
    if margin is not None and len(_SPACE.split(margin)) > 1:
        raise Refused("unsupported_parameter", "crop_margin takes one value",
                      f"crop_margin: one margin for all four sides; got {margin!r}")
    raw: dict[str, Any] = {"format": fmt, "channels": channels, "bg_color": bg_color,
                           "crop": present.get("crop"), "crop_margin": margin}
    try:
        return OutputOptions.parse({k: v for k, v in raw.items() if v is not None})
    except InvalidOptions as exc:
        raise Refused("invalid_parameter", "A parameter is not valid", exc.message) from exc


def _one_of(name: str, value: str | None, allowed: frozenset[str]) -> None:
    if value is not None and value.lower() not in allowed:
        raise Refused("invalid_parameter", f"{name} is not valid",
                      f"{name}: {value!r} is not one of {', '.join(sorted(allowed))}")


def _flag(name: str, value: str | None) -> bool:
    if value is None:
        return False
    text = value.lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Refused("invalid_parameter", f"{name} is not valid",
                  f"{name}: {value!r} is not true or false")


def _whole_image(roi: str) -> bool:
    parts = _SPACE.split(roi.strip().lower())
    return (len(parts) == 4 and parts[0] in _WHOLE_START and parts[1] in _WHOLE_START
            and parts[2] in _WHOLE_END and parts[3] in _WHOLE_END)
