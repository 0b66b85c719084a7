"""An ``ObjectStore`` on S3 or anything that speaks its API (MinIO, moto), through boto3.

Retries are botocore's own ("standard" mode: backoff with jitter on throttling, 5xx and
connection errors), pooling is the client's; this module adds the byte cap, a streaming read,
and one translation of botocore's errors into Clipline's:

    404 / NoSuchKey / NoSuchBucket / NoSuchVersion / 412 (object changed) → ObjectMissing
    403 / AccessDenied                                               → AccessDenied
    5xx, throttling, connection errors (after botocore's retries)       → StorageUnavailable
    connect or read timeouts                                            → OperationTimeout

A job's ``version`` is an S3 version id, or an ETag when it is quoted (``"9b2c…"``) as S3
writes ETags: then the read is conditional (``If-Match``), and a changed object is missing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ReadTimeoutError,
)

from pipeline.errors import (
    AccessDenied,
    ObjectMissing,
    ObjectTooLarge,
    OperationTimeout,
    StorageUnavailable,
)
from pipeline.settings import Settings

MISSING = {"404", "NoSuchKey", "NoSuchBucket", "NoSuchVersion", "412", "PreconditionFailed"}
DENIED = {"403", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId",
          "SignatureDoesNotMatch"}
CHUNK = 1 << 20


def make_client(settings: Settings) -> Any:
    """One S3 client per process (clients are thread-safe; sessions are not shared)."""
    config = Config(
        region_name=settings.s3_region,
        connect_timeout=settings.s3_connect_timeout_seconds,
        read_timeout=settings.s3_read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": settings.s3_max_attempts},
        max_pool_connections=settings.s3_max_pool_connections,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=settings.s3_endpoint_url, config=config
    )


class S3Store:
    def __init__(self, client: Any, *, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.client = client
        self.max_bytes = max_bytes

    def get(self, bucket: str, key: str, *, version: str | None = None) -> bytes:
        args: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version and version.startswith('"'):
            args["IfMatch"] = version
        elif version:
            args["VersionId"] = version
        where = f"s3://{bucket}/{key}"
        with _translated(where):
            response = self.client.get_object(**args)
            size = response.get("ContentLength", 0)
            if size > self.max_bytes:
                response["Body"].close()
                raise ObjectTooLarge(f"{where} has {size} bytes, the limit is {self.max_bytes}")
            return self._read(response["Body"], where)

    def _read(self, body: Any, where: str) -> bytes:
        # The length header can lie (or be absent): the cap holds on what actually arrives.
        parts, total = [], 0
        try:
            while chunk := body.read(CHUNK):
                total += len(chunk)
                if total > self.max_bytes:
                    raise ObjectTooLarge(f"{where} is larger than {self.max_bytes} bytes")
                parts.append(chunk)
        finally:
            body.close()
        return b"".join(parts)

    def put(
        self, bucket: str, key: str, data: bytes, *, content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        with _translated(f"s3://{bucket}/{key}"):
            self.client.put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                Metadata=dict(metadata or {}),
            )

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        """Every key under ``prefix``, in S3's order, one page (1,000 keys) at a time."""
        with _translated(f"s3://{bucket}/{prefix}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    yield item["Key"]

    def presign(self, bucket: str, key: str, expires: int = 3600) -> str:
        """A time-limited GET URL for the object (signed locally: no request is made)."""
        with _translated(f"s3://{bucket}/{key}"):
            url: str = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires)
        return url

    def head(self, bucket: str, key: str) -> dict[str, Any]:
        """Content type, length and user metadata of an object (for checks and status pages)."""
        with _translated(f"s3://{bucket}/{key}"):
            found = self.client.head_object(Bucket=bucket, Key=key)
        return {"content_type": found.get("ContentType"), "size": found.get("ContentLength"),
                "metadata": found.get("Metadata", {}), "etag": found.get("ETag")}


@contextmanager
def _translated(where: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        message = f"{where}: {code or status} {error.get('Message', '')}".strip()
        if code in MISSING or status in MISSING:
            raise ObjectMissing(message) from exc
        if code in DENIED or status in DENIED:
            raise AccessDenied(message) from exc
        raise StorageUnavailable(message) from exc
    except (ConnectTimeoutError, ReadTimeoutError) as exc:
        raise OperationTimeout(f"{where}: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(f"{where}: {exc}") from exc
