"""One contract for every ObjectStore: in memory, local folders, and S3 over HTTP (moto's real
server on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
import pytest
from botocore.exceptions import ClientError

from pipeline import errors
from pipeline.adapters.storage.file import FileStore
from pipeline.adapters.storage.memory import MemoryStore
from pipeline.adapters.storage.s3 import S3Store, make_client, storage_error
from pipeline.ports import SignedPut
from pipeline.settings import Settings

LIMIT = 64 * 1024


def _s3_settings(endpoint: str, **kw: Any) -> Settings:
    return Settings(s3_endpoint_url=endpoint, **kw)


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto accepts any credentials; botocore needs some to sign with.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture(params=["memory", "file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Any, str]:
    """(store, bucket): a store capped at LIMIT bytes and a bucket that exists in it."""
    if request.param == "memory":
        return MemoryStore(max_bytes=LIMIT), "bucket"
    if request.param == "file":
        (tmp_path / "bucket").mkdir()
        return FileStore(max_bytes=LIMIT), str(tmp_path / "bucket")
    request.getfixturevalue("s3_env")
    client = make_client(_s3_settings(request.getfixturevalue("s3_endpoint")))
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3Store(client, max_bytes=LIMIT), bucket


def test_put_then_get_returns_the_bytes(store: tuple[Any, str]) -> None:
    s, bucket = store
    s.put(bucket, "cutouts/a/b.png", b"\x89PNG data", content_type="image/png",
          metadata={"job-id": "j1"})
    assert s.get(bucket, "cutouts/a/b.png") == b"\x89PNG data"


def test_put_again_overwrites(store: tuple[Any, str]) -> None:
    s, bucket = store
    s.put(bucket, "k.png", b"first", content_type="image/png")
    s.put(bucket, "k.png", b"second", content_type="image/png")
    assert s.get(bucket, "k.png") == b"second"


def test_missing_key_is_object_missing(store: tuple[Any, str]) -> None:
    s, bucket = store
    with pytest.raises(errors.ObjectMissing):
        s.get(bucket, "nope.jpg")


def test_object_over_the_byte_cap_is_refused(store: tuple[Any, str]) -> None:
    s, bucket = store
    s.put(bucket, "huge.jpg", b"x" * (LIMIT + 1), content_type="image/jpeg")
    with pytest.raises(errors.ObjectTooLarge):
        s.get(bucket, "huge.jpg")


def test_an_object_of_exactly_the_cap_is_read(store: tuple[Any, str]) -> None:
    s, bucket = store
    s.put(bucket, "edge.jpg", b"y" * LIMIT, content_type="image/jpeg")
    assert len(s.get(bucket, "edge.jpg")) == LIMIT


def put_through(s: Any, signed: SignedPut, data: bytes) -> None:
    """The client's PUT to a presigned URL, as each store takes it."""
    if isinstance(s, MemoryStore):
        s.receive_put(signed.url, data, signed.headers)
    elif isinstance(s, FileStore):  # a file: URL, for a client on this host
        path = Path(url2pathname(urlsplit(signed.url).path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    else:
        httpx.put(signed.url, content=data, headers=signed.headers, timeout=30).raise_for_status()


def test_a_presigned_put_lands_at_its_key(store: tuple[Any, str]) -> None:
    s, bucket = store
    data = b"\x89PNG uploaded by the client"
    digest = hashlib.sha256(data).hexdigest()
    signed = s.presign_put(bucket, "uploads/acme/k1", content_type="image/png", size=len(data),
                           sha256=digest, expires=60)
    assert signed.headers["Content-Type"] == "image/png"
    assert signed.headers["Content-Length"] == str(len(data))
    assert 50 < (signed.expires_at - datetime.now(UTC)).total_seconds() <= 60
    put_through(s, signed, data)
    assert s.get(bucket, "uploads/acme/k1") == data


# -- S3 only --------------------------------------------------------------------------------


@pytest.mark.usefixtures("s3_env")
def test_s3_keeps_content_type_and_provenance_metadata(s3_endpoint: str) -> None:
    client = make_client(_s3_settings(s3_endpoint))
    client.create_bucket(Bucket="prov")
    s3 = S3Store(client)
    s3.put("prov", "o.webp", b"RIFF", content_type="image/webp",
           metadata={"job-id": "j-7", "model": "u2netp", "options-hash": "abc"})
    head = s3.head("prov", "o.webp")
    assert head["content_type"] == "image/webp"
    assert head["metadata"] == {"job-id": "j-7", "model": "u2netp", "options-hash": "abc"}


@pytest.mark.usefixtures("s3_env")
def test_s3_missing_bucket_is_object_missing(s3_endpoint: str) -> None:
    s3 = S3Store(make_client(_s3_settings(s3_endpoint)))
    with pytest.raises(errors.ObjectMissing, match="NoSuchBucket"):
        s3.get(f"absent-{uuid.uuid4().hex[:8]}", "k.jpg")


@pytest.mark.usefixtures("s3_env")
def test_s3_version_and_etag_pin_the_object(s3_endpoint: str) -> None:
    client = make_client(_s3_settings(s3_endpoint))
    client.create_bucket(Bucket="pinned")
    client.put_bucket_versioning(Bucket="pinned",
                                 VersioningConfiguration={"Status": "Enabled"})
    first = client.put_object(Bucket="pinned", Key="k.jpg", Body=b"one")
    client.put_object(Bucket="pinned", Key="k.jpg", Body=b"two")
    s3 = S3Store(client)
    assert s3.get("pinned", "k.jpg", version=first["VersionId"]) == b"one"
    with pytest.raises(errors.ObjectChanged):
        s3.get("pinned", "k.jpg", version=first["ETag"])  # the object changed since


# -- S3's answers through the store, by meaning (tests/unit/test_s3_errors.py has every row of the
# table as AWS sends it; these are moto's real answers). Where moto answers differently from AWS,
# the comment says so, and the test asserts what matters whichever way: permanent, never weather.


@pytest.fixture
def versioned(s3_env: None, s3_endpoint: str) -> tuple[Any, str]:
    """(raw boto3 client, bucket): a fresh versioning-enabled bucket on moto."""
    client = make_client(_s3_settings(s3_endpoint, s3_max_attempts=1))
    bucket = f"v-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return client, bucket


def _deleted(client: Any, bucket: str, key: str) -> tuple[str, str]:
    """Put then delete ``key``: (the object's version, the delete marker's version)."""
    version = client.put_object(Bucket=bucket, Key=key, Body=b"one")["VersionId"]
    deleted = client.delete_object(Bucket=bucket, Key=key)
    assert deleted["DeleteMarker"] is True
    return version, deleted["VersionId"]


def test_s3_a_delete_marker_pinned_by_version_is_object_deleted(
        versioned: tuple[Any, str]) -> None:
    client, bucket = versioned
    version, marker = _deleted(client, bucket, "k.jpg")
    s3 = S3Store(client)
    with pytest.raises(errors.ObjectDeleted, match="405"):  # moto: 405 + x-amz-delete-marker
        s3.head(bucket, "k.jpg", version=marker)
    # AWS answers this GET 405 MethodNotAllowed (ObjectDeleted, a unit case); moto answers
    # 404 NoSuchVersion. Either way it is dead at once, never retried as weather.
    with pytest.raises(errors.PermanentError) as info:
        s3.get(bucket, "k.jpg", version=marker)
    assert info.value.reason in {"object_deleted", "object_missing"}
    assert s3.get(bucket, "k.jpg", version=version) == b"one"  # the earlier version remains


def test_s3_a_deleted_key_is_object_deleted(versioned: tuple[Any, str]) -> None:
    client, bucket = versioned
    _deleted(client, bucket, "gone.jpg")
    s3 = S3Store(client)
    with pytest.raises(errors.ObjectDeleted):  # 404 + x-amz-delete-marker: true
        s3.head(bucket, "gone.jpg")
    # AWS sends the same header on the GET (ObjectDeleted); moto's GET omits it.
    with pytest.raises(errors.PermanentError) as info:
        s3.get(bucket, "gone.jpg")
    assert info.value.reason in {"object_deleted", "object_missing"}


def test_s3_an_unknown_or_malformed_version_is_permanent(versioned: tuple[Any, str]) -> None:
    client, bucket = versioned
    client.put_object(Bucket=bucket, Key="k.jpg", Body=b"one")
    s3 = S3Store(client)
    with pytest.raises(errors.ObjectMissing, match="NoSuchVersion"):
        s3.get(bucket, "k.jpg", version="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdR")
    # AWS refuses a malformed id with 400 InvalidArgument (storage_refused, a unit case); moto
    # answers 404 NoSuchVersion.
    with pytest.raises(errors.PermanentError) as info:
        s3.get(bucket, "k.jpg", version="not a version!")
    assert info.value.reason in {"storage_refused", "object_missing"}


@pytest.mark.usefixtures("s3_env")
def test_s3_if_match_on_a_changed_object_is_object_changed(s3_endpoint: str) -> None:
    client = make_client(_s3_settings(s3_endpoint))
    bucket = f"c-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    first = client.put_object(Bucket=bucket, Key="k.jpg", Body=b"one")["ETag"]
    client.put_object(Bucket=bucket, Key="k.jpg", Body=b"two")
    s3 = S3Store(client)
    with pytest.raises(errors.ObjectChanged, match=r"412 PreconditionFailed.*Condition=If-Match"):
        s3.get(bucket, "k.jpg", version=first)
    with pytest.raises(errors.ObjectChanged, match="412"):
        s3.head(bucket, "k.jpg", version=first)


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
def test_s3_an_archived_object_is_object_archived(s3_endpoint: str, storage_class: str) -> None:
    client = make_client(_s3_settings(s3_endpoint))
    bucket = f"a-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="cold.jpg", Body=b"one", StorageClass=storage_class)
    with pytest.raises(errors.ObjectArchived, match=rf"InvalidObjectState.*{storage_class}"):
        S3Store(client).get(bucket, "cold.jpg")


@pytest.mark.usefixtures("s3_env")
def test_s3_put_to_a_missing_bucket_is_output_bucket_missing(s3_endpoint: str) -> None:
    s3 = S3Store(make_client(_s3_settings(s3_endpoint)))
    absent = f"absent-{uuid.uuid4().hex[:8]}"
    with pytest.raises(errors.OutputBucketMissing, match="NoSuchBucket"):
        s3.put(absent, "cutouts/a.png", b"x", content_type="image/png")
    with pytest.raises(errors.ObjectMissing, match="NoSuchBucket"):
        list(s3.list_keys(absent, "photos/"))


@pytest.mark.usefixtures("s3_env")
def test_s3_a_range_beyond_the_object_is_refused(s3_endpoint: str) -> None:
    """The store reads whole objects; a ranged read's 416 is classified all the same."""
    client = make_client(_s3_settings(s3_endpoint))
    bucket = f"r-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="k.jpg", Body=b"abc")
    with pytest.raises(ClientError) as info:
        client.get_object(Bucket=bucket, Key="k.jpg", Range="bytes=10-20")
    error = storage_error(info.value, "get", f"s3://{bucket}/k.jpg")
    assert error.reason == "storage_refused" and not error.transient
    assert "416 InvalidRange" in error.message


@pytest.mark.usefixtures("s3_env")
def test_s3_unreachable_endpoint_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    settings = _s3_settings(f"http://127.0.0.1:{port}", s3_max_attempts=1,
                            s3_connect_timeout_seconds=1.0)
    with pytest.raises(errors.TransientError) as info:
        S3Store(make_client(settings)).get("b", "k.jpg")
    assert info.value.reason in {"storage_unavailable", "timeout"}
