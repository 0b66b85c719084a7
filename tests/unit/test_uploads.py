"""``pipeline.uploads`` with the in-memory store, and the upload area's rule in
``pipeline.tenants.source_allowed``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.adapters.storage.file import FileStore
from pipeline.adapters.storage.memory import MemoryStore
from pipeline.errors import (
    AccessDenied,
    CorruptImage,
    NotAnImage,
    StorageRefused,
    TooManyPixels,
    UnsupportedFormat,
)
from pipeline.imaging.decode import DEFAULT_FORMATS, DecodeLimits
from pipeline.settings import Settings
from pipeline.tenants import Tenant, UploadArea, source_allowed
from pipeline.uploads import (
    Grant,
    UploadsNotConfigured,
    UploadTooLarge,
    grant_upload,
    store_upload,
)
from tests.pictures import square

AREA = UploadArea("up", "uploads")
LIMITS = DecodeLimits()
PNG = square((40, 30), (10, 10, 30, 20))


def store(data: bytes, tenant: str = "acme", *, max_bytes: int = 1 << 20,
          into: MemoryStore | None = None, limits: DecodeLimits = LIMITS) -> tuple[str, str]:
    return store_upload(into or MemoryStore(), AREA, tenant, data, max_bytes=max_bytes,
                        limits=limits)


def test_an_image_is_stored_under_the_tenant_named_by_its_sha256() -> None:
    memory = MemoryStore()
    bucket, key = store(PNG, into=memory)
    assert bucket == "up"
    assert key.startswith("uploads/acme/") and len(key.rsplit("/", 1)[1]) == 64
    kept = memory.objects[(bucket, key)]
    assert kept.data == PNG and kept.content_type == "image/png"
    assert kept.metadata["tenant"] == "acme"


def test_the_same_bytes_again_are_the_same_object() -> None:
    memory = MemoryStore()
    first, again = store(PNG, into=memory), store(PNG, into=memory)
    assert first == again and len(memory.objects) == 1
    other = store(square((40, 30), (5, 5, 30, 20)), into=memory)
    assert other != first


def test_the_same_bytes_of_two_tenants_are_two_objects() -> None:
    assert store(PNG, "acme") != store(PNG, "globex")


def test_over_the_limit_is_refused_before_anything_is_written() -> None:
    memory = MemoryStore()
    with pytest.raises(UploadTooLarge, match=f"the limit of {len(PNG) - 1} bytes"):
        store(PNG, into=memory, max_bytes=len(PNG) - 1)
    assert memory.objects == {}
    assert store(PNG, into=memory, max_bytes=len(PNG))  # exactly the limit is taken


def test_empty_is_not_an_image() -> None:
    with pytest.raises(NotAnImage, match="empty"):
        store(b"")


@pytest.mark.parametrize("data", [b"hello, world", b"%PDF-1.7\n", b"\x00" * 100])
def test_not_an_image_is_refused_and_not_stored(data: bytes) -> None:
    memory = MemoryStore()
    with pytest.raises(NotAnImage):
        store(data, into=memory)
    assert memory.objects == {}


def test_a_truncated_header_is_refused() -> None:
    with pytest.raises((CorruptImage, NotAnImage)):
        store(PNG[:20])  # the signature and half of IHDR


def test_a_format_outside_the_decoders_allowlist_is_refused() -> None:
    gif = square((8, 8), (2, 2, 6, 6), fmt="GIF")
    with pytest.raises(UnsupportedFormat):
        store(gif)


def test_too_many_pixels_is_refused_from_the_header() -> None:
    with pytest.raises(TooManyPixels):
        store(PNG, limits=DecodeLimits(max_pixels=100))


def test_no_bucket_for_uploads_is_said_plainly() -> None:
    with pytest.raises(UploadsNotConfigured, match="CLIPLINE_UPLOAD_BUCKET"):
        store_upload(MemoryStore(), None, "acme", PNG, max_bytes=1 << 20, limits=LIMITS)


# -- presigned PUTs -------------------------------------------------------------------------


def grant(memory: MemoryStore, size: int = len(PNG), content_type: str = "image/png",
          sha256: str | None = None, max_bytes: int = 1 << 20) -> Grant:
    return grant_upload(memory, AREA, "acme", content_type=content_type, size=size,
                        sha256=sha256, max_bytes=max_bytes, formats=DEFAULT_FORMATS,
                        seconds=60)


def test_a_grant_names_a_fresh_key_under_the_tenant_and_binds_size_and_type() -> None:
    memory = MemoryStore()
    one, two = grant(memory), grant(memory)
    assert one.key != two.key and one.key.startswith("uploads/acme/")
    assert one.put.headers == {"Content-Type": "image/png",
                               "Content-Length": str(len(PNG))}
    memory.receive_put(one.put.url, PNG, {"Content-Type": "image/png"})
    assert memory.objects[("up", one.key)].data == PNG
    assert list(memory.objects) == [("up", one.key)]


def test_a_put_of_another_length_type_or_bytes_is_refused_like_s3() -> None:
    memory = MemoryStore()
    signed = grant(memory, sha256=hashlib.sha256(PNG).hexdigest()).put
    with pytest.raises(AccessDenied):
        memory.receive_put(signed.url, PNG + b"x", signed.headers)
    with pytest.raises(AccessDenied):
        memory.receive_put(signed.url, PNG, {**signed.headers, "Content-Type": "image/jpeg"})
    with pytest.raises(StorageRefused):
        memory.receive_put(signed.url, PNG[::-1], signed.headers)
    assert memory.objects == {}


def test_a_grant_over_the_limit_or_of_another_type_is_refused() -> None:
    memory = MemoryStore()
    with pytest.raises(UploadTooLarge):
        grant(memory, size=101, max_bytes=100)
    with pytest.raises(UnsupportedFormat, match="image/gif"):
        grant(memory, content_type="image/gif")  # GIF is off by default
    assert memory.signed == {}


def test_a_folder_store_hands_out_its_files_url(tmp_path: Path) -> None:
    made = grant_upload(FileStore(), UploadArea(str(tmp_path), "uploads"), "acme",
                        content_type="image/png", size=10, sha256=None, max_bytes=100,
                        formats=DEFAULT_FORMATS, seconds=60)
    assert made.put.url.startswith("file://") and made.put.url.endswith(made.key)


# -- who may read the upload area ---------------------------------------------------------------


@pytest.mark.parametrize(("tenant", "allowed"), [
    (Tenant("acme", "Acme"), True),  # no allowlist at all: its own uploads still
    (Tenant("acme", "Acme", ("photos/",)), True),
    (Tenant("acme", "Acme", allow_any=True), True),
])
def test_a_tenant_reads_its_own_uploads(tenant: Tenant, allowed: bool) -> None:
    assert source_allowed(tenant, "up", "uploads/acme/" + "a" * 64, AREA) is allowed


@pytest.mark.parametrize("key", [
    "uploads/globex/" + "a" * 64,  # another tenant's
    "uploads/acme-2/x",  # a tenant whose id starts like acme's
    "uploads/acme/../globex/x", "uploads/acme/sub/x", "uploads/acme/..", "uploads/acme/",
    "uploads/",  # the whole area, as a prefix to list
])
@pytest.mark.parametrize("tenant", [
    Tenant("acme", "Acme"), Tenant("acme", "Acme", ("up/",)), Tenant("acme", "Acme",
                                                                     allow_any=True)])
def test_no_allowlist_opens_the_rest_of_the_upload_area(tenant: Tenant, key: str) -> None:
    assert not source_allowed(tenant, "up", key, AREA)


def test_outside_the_area_the_allowlist_decides_as_before() -> None:
    shoes = Tenant("acme", "Acme", ("up/shoes/",))
    assert source_allowed(shoes, "up", "shoes/a.jpg", AREA)
    assert not source_allowed(shoes, "up", "bags/a.jpg", AREA)
    assert not source_allowed(Tenant("acme", "Acme"), "other", "uploads/acme/x", AREA)
    assert source_allowed(shoes, "up", "uploads/acme/x", None) is False  # no area: no rule


# -- settings -------------------------------------------------------------------------------


def test_the_upload_area_defaults_to_the_output_bucket() -> None:
    assert Settings(s3_output_bucket="cutouts").upload_area == UploadArea("cutouts", "uploads")
    assert Settings(s3_output_bucket="cutouts", upload_bucket="inbox",
                    upload_prefix="/in/").upload_area == UploadArea("inbox", "in")
    assert Settings().upload_area is None


def test_an_upload_limit_the_door_would_never_reach_fails_at_start() -> None:
    with pytest.raises(ValidationError, match="upload_max_bytes must be below"):
        Settings(upload_max_bytes=10 * 1024 * 1024)  # = API_MAX_BODY_BYTES
    assert Settings(api_max_body_bytes=2000).upload_max_bytes > 2000  # default: the door's wins


def test_a_bad_upload_bucket_fails_at_start() -> None:
    with pytest.raises(ValidationError, match="upload_bucket"):
        Settings(upload_bucket="up")
