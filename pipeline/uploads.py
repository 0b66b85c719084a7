"""Images a tenant hands over itself, stored where workers read them; then a normal job.

Two ways in, one area (``Settings.upload_area``: ``<bucket>/<prefix>/<tenant>/<name>``), which
``pipeline.tenants.source_allowed`` opens to its own tenant only:

- ``store_upload``: the bytes came with the request (``POST /v1/jobs`` multipart, remove.bg's
  ``image_file``). Checked before anything is written: at most ``max_bytes`` (``UploadTooLarge``),
  not empty, and an image the safe decoder's header probe accepts (``NotAnImage``,
  ``UnsupportedFormat``, ``CorruptImage``, ``TooManyPixels``, ... from
  ``pipeline.imaging.decode``). The key is the sha256 of the bytes: the same image uploaded again
  is the same object, so with the same options it is the same job (the ledger's usual dedupe).
- ``grant_upload``: the client sends the bytes to S3 itself (``POST /v1/uploads``), through a
  presigned PUT for a fresh random name (the server has not seen the bytes, so it cannot name
  them by their digest). The signature binds the declared length and content type (and the
  sha256, when declared): S3 refuses a PUT that differs. What S3 cannot check, that the bytes
  are an image, the worker checks when it reads them, as for any source.

Pure but for the store it is given (``pipeline.ports.UploadStore``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import NotAnImage, UnsupportedFormat, UsageError
from pipeline.imaging.decode import DecodeLimits, check, probe
from pipeline.tenants import UploadArea

if TYPE_CHECKING:
    from pipeline.ports import SignedPut, UploadStore

# The content types a client may declare, by the decoder's format names.
CONTENT_TYPES: dict[str, str] = {
    "JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff",
    "BMP": "image/bmp", "GIF": "image/gif",
}


class UploadTooLarge(UsageError):
    """More bytes than the upload limit allows (the API answers 413)."""

    reason = "upload_too_large"


class UploadsNotConfigured(UsageError):
    """No bucket for uploads: neither UPLOAD_BUCKET nor S3_OUTPUT_BUCKET is set."""

    reason = "uploads_not_configured"


@dataclass(frozen=True, slots=True)
class Grant:
    """What ``grant_upload`` hands out: where to PUT, and the source to submit afterwards."""

    bucket: str
    key: str
    put: SignedPut
    max_bytes: int


def area_of(area: UploadArea | None) -> UploadArea:
    if area is None:
        raise UploadsNotConfigured("uploads need a bucket: set CLIPLINE_UPLOAD_BUCKET or "
                                   "CLIPLINE_S3_OUTPUT_BUCKET")
    return area


def store_upload(store: UploadStore, area: UploadArea | None, tenant_id: str, data: bytes, *,
                 max_bytes: int, limits: DecodeLimits) -> tuple[str, str]:
    """Check ``data`` and store it under the tenant's uploads, named by its sha256; returns
    (bucket, key). Nothing is written when a check refuses it."""
    where = area_of(area)
    if len(data) > max_bytes:
        raise UploadTooLarge(f"the image is larger than the limit of {max_bytes} bytes")
    if not data:
        raise NotAnImage("the upload is empty")
    info = probe(data, limits)
    check(info, limits)
    digest = hashlib.sha256(data).hexdigest()
    key = where.key(tenant_id, digest)
    content_type = CONTENT_TYPES.get(info.format, "application/octet-stream")
    store.put(where.bucket, key, data, content_type=content_type,
              metadata={"tenant": tenant_id, "sha256": digest})
    return where.bucket, key


def grant_upload(store: UploadStore, area: UploadArea | None, tenant_id: str, *,
                 content_type: str, size: int, sha256: str | None, max_bytes: int,
                 formats: frozenset[str], seconds: int) -> Grant:
    """A presigned PUT for one image of ``size`` bytes and ``content_type`` (one of the
    ``formats`` the decoder accepts) under a fresh name in the tenant's uploads."""
    where = area_of(area)
    if size > max_bytes:
        raise UploadTooLarge(f"{size} bytes declared; at most {max_bytes}")
    allowed = {CONTENT_TYPES[f] for f in formats if f in CONTENT_TYPES}
    if content_type not in allowed:
        raise UnsupportedFormat(f"{content_type} is not accepted; one of "
                                f"{', '.join(sorted(allowed))}")
    key = where.key(tenant_id, secrets.token_hex(16))
    put = store.presign_put(where.bucket, key, content_type=content_type, size=size,
                            sha256=sha256, expires=seconds)
    return Grant(where.bucket, key, put, max_bytes)

