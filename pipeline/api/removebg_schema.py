"""The OpenAPI description of ``POST /v1.0/removebg``: remove.bg's request and answer shapes.

The route reads its body itself (after the door has checked the key), so the request body is
declared here rather than inferred from parameters.
"""

from __future__ import annotations

from typing import Any

from pipeline.removebg_params import FORMATS, SIZES, TYPE_LEVELS, TYPES

_TEXT: dict[str, Any] = {"type": "string"}
_FIELDS: dict[str, Any] = {
    "image_file_b64": {**_TEXT, "description": "The image, base64."},
    "image_url": {**_TEXT, "description": "Only s3://bucket/key inside the tenant's allowed "
                  "sources; http(s) URLs are refused."},
    "size": {**_TEXT, "enum": sorted(SIZES), "description": "Accepted and ignored: the "
             "cut-out keeps the source's resolution."},
    "type": {**_TEXT, "enum": sorted(TYPES), "description": "Accepted and ignored."},
    "type_level": {**_TEXT, "enum": sorted(TYPE_LEVELS), "description": "Accepted and ignored."},
    "format": {**_TEXT, "enum": [*sorted(FORMATS), "zip"],
               "description": "auto, png, jpg (webp too); zip is refused."},
    "channels": {**_TEXT, "enum": ["rgba", "alpha"]},
    "bg_color": {**_TEXT, "description": "Hex (rgb, rrggbb) or a CSS basic colour name."},
    "crop": {"type": "boolean"},
    "crop_margin": {**_TEXT, "description": "One margin: '10px' or '5%'."},
    "roi": {**_TEXT, "description": "Only the whole image: '0% 0% 100% 100%'."},
    "scale": {**_TEXT, "description": "Only 'original'."},
    "position": {**_TEXT, "description": "Only 'original'."},
    "add_shadow": {"type": "boolean", "description": "Only false."},
    "semitransparency": {"type": "boolean", "description": "Accepted and ignored."},
}
_FORM = {"type": "object", "properties": {
    "image_file": {**_TEXT, "format": "binary", "description": "The image."}, **_FIELDS}}
_JSON = {"type": "object", "properties": _FIELDS}

REQUEST_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": _FORM},
    "application/x-www-form-urlencoded": {"schema": _JSON},
    "application/json": {"schema": _JSON},
}}}

_ERROR = {"type": "object", "required": ["errors"], "properties": {"errors": {
    "type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["title", "code"],
        "properties": {"title": _TEXT, "code": _TEXT, "detail": _TEXT}}}}}
_HEADERS = {name: {"schema": {"type": "string"}, "description": what} for name, what in (
    ("X-Width", "Width of the result in pixels."),
    ("X-Height", "Height of the result in pixels."),
    ("X-Type", "Always 'other': Clipline does not classify the foreground."),
    ("X-Credits-Charged", "Always 0."),
    ("X-Clipline-Job-Id", "The job that made the result (GET /v1/jobs/{id})."),
)}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The cut-out: its bytes, or with `Accept: application/json` "
          "`{\"data\": {\"result_b64\": ...}}`.", "headers": _HEADERS, "content": {
              "image/png": {"schema": {**_TEXT, "format": "binary"}},
              "image/jpeg": {"schema": {**_TEXT, "format": "binary"}},
              "image/webp": {"schema": {**_TEXT, "format": "binary"}},
              "application/json": {"schema": {
                  "type": "object", "required": ["data"], "properties": {"data": {
                      "type": "object", "required": ["result_b64"],
                      "properties": {"result_b64": _TEXT}}}}}}},
    400: _error("A parameter is refused or not valid, the image is not one Clipline "
                "reads, or the job failed (its reason code)."),
    403: _error("No API key, or not a valid one (`auth_failed`)."),
    413: _error("The body or the image is too large (`file_too_large`)."),
    429: _error("Over the key's rate (`rate_limit_exceeded`); see Retry-After."),
    503: _error("A service Clipline needs is unavailable; retry later."),
    504: _error("The job did not finish within CLIPLINE_REMOVEBG_WAIT_SECONDS "
                "(`result_pending`): poll `job_url`, the job goes on."),
}
