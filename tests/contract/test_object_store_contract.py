"""One contract for every ObjectStore: in memory, local folders, and S3 over HTTP (moto's real
server on 127.0.0.1)."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline import errors
from pipeline.adapters.file_store import FileStore
from pipeline.adapters.memory_store import MemoryStore
from pipeline.adapters.s3_store import S3Store, make_client
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
    with pytest.raises(errors.ObjectMissing):
        s3.get("pinned", "k.jpg", version=first["ETag"])  # the object changed since


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
