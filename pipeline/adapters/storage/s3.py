"""An ``ObjectStore`` on S3 or anything that speaks its API (MinIO, moto), through boto3.

Retries are botocore's own ("standard" mode: backoff with jitter on throttling, 5xx, S3's
``RequestTimeout`` and connection errors), pooling is the client's; this module adds the byte
cap, a streaming read, and one translation of S3's answers into Clipline's errors: the table
``ANSWERS`` below, read by ``storage_error``. Its codes and statuses are AWS's list
(https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList); a HEAD
answer has no body, so there botocore's code is the status itself (``"404"``).

Each answer is classified by its meaning for the operation that got it (``get``, ``head``,
``put``, ``list``): a 404 ``NoSuchBucket`` on a read is the source missing, on a ``put`` the
output bucket. Throttling, 5xx, timeouts and credentials that renew themselves are weather
(transient); everything else will answer the same way next time (permanent). A delete marker
is told by the ``x-amz-delete-marker: true`` header or the 405's ``ResourceType`` element
(https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html). What the table does not
name: another 5xx, or an answer without a status, is ``StorageUnavailable``; another ``KMS.*``
4xx ``AccessDenied``; anything else ``StorageRefused``; the message carries S3's status and
code. Outside the table, connect or read timeouts are ``OperationTimeout``, other botocore
errors (connection reset, a broken stream) ``StorageUnavailable``.

A job's ``version`` is an S3 version id, or an ETag when it is quoted (``"9b2c…"``) as S3
writes ETags: then the read is conditional (``If-Match``), and an overwritten object is
``ObjectChanged``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

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
    ClipError,
    ObjectArchived,
    ObjectChanged,
    ObjectDeleted,
    ObjectMissing,
    ObjectTooLarge,
    OperationTimeout,
    OutputBucketMissing,
    StorageRefused,
    StorageUnavailable,
)
from pipeline.ports import SignedPut
from pipeline.settings import Settings

CHUNK = 1 << 20

Operation = Literal["get", "head", "put", "list"]
EVERY: frozenset[Operation] = frozenset({"get", "head", "put", "list"})
READS: frozenset[Operation] = frozenset({"get", "head"})
SOURCES: frozenset[Operation] = frozenset({"get", "head", "list"})
PUT: frozenset[Operation] = frozenset({"put"})
ANY = "*"
"""In a row's code: any code with that status (a HEAD answer's code is its status)."""


@dataclass(frozen=True)
class Answer:
    """One row: what S3's (status, code) means to Clipline, for the operations named."""

    status: int
    code: str
    error: type[ClipError]
    meaning: str
    operations: frozenset[Operation] = EVERY
    delete_marker: bool = False  # only when S3 says the version is a delete marker


ANSWERS: tuple[Answer, ...] = (
    # -- the source is not there, or not as the job pinned it ---------------------------------
    Answer(404, "NoSuchKey", ObjectMissing, "no object has this key", READS),
    Answer(404, "NoSuchVersion", ObjectMissing, "the pinned version does not exist", READS),
    Answer(404, "NoSuchBucket", ObjectMissing, "the bucket does not exist", SOURCES),
    Answer(404, ANY, ObjectMissing, "not found", SOURCES),
    Answer(404, ANY, ObjectDeleted, "the current version is a delete marker", READS,
           delete_marker=True),
    Answer(405, ANY, ObjectDeleted, "the pinned version is a delete marker", READS,
           delete_marker=True),
    Answer(412, ANY, ObjectChanged, "the object's ETag no longer matches (If-Match)", READS),
    Answer(403, "InvalidObjectState", ObjectArchived,
           "the object is in an archive storage class: restore it, then redrive", READS),
    # -- where the cut-out goes ------------------------------------------------------------------
    Answer(404, "NoSuchBucket", OutputBucketMissing, "the output bucket does not exist", PUT),
    # -- access: the credentials, a policy, the KMS key -------------------------------------------
    Answer(403, ANY, AccessDenied, "access denied"),
    Answer(403, "AccessDenied", AccessDenied, "access denied"),
    Answer(403, "AccountProblem", AccessDenied, "the AWS account has a problem"),
    Answer(403, "AllAccessDisabled", AccessDenied, "all access to this resource is disabled"),
    Answer(403, "InvalidAccessKeyId", AccessDenied, "the access key id is unknown"),
    Answer(403, "SignatureDoesNotMatch", AccessDenied, "the secret key does not match"),
    Answer(403, "InvalidSecurity", AccessDenied, "the security credentials are not valid"),
    Answer(403, "InvalidPayer", AccessDenied, "access to this object is disabled"),
    Answer(403, "NotSignedUp", AccessDenied, "the account is not signed up for S3"),
    Answer(400, "InvalidToken", AccessDenied, "the session token is malformed"),
    Answer(400, "KMS.DisabledException", AccessDenied, "the object's KMS key is disabled"),
    Answer(400, "KMS.KMSInvalidStateException", AccessDenied,
           "the object's KMS key is pending deletion or not usable"),
    Answer(400, "KMS.NotFoundException", AccessDenied, "the KMS key does not exist"),
    Answer(400, "KMS.AccessDeniedException", AccessDenied, "the KMS key's policy refuses us"),
    Answer(400, "KMS.*", AccessDenied, "KMS refused the object's key"),
    # -- weather: the same request can succeed later ---------------------------------------------
    Answer(503, "SlowDown", StorageUnavailable, "throttled: reduce the request rate"),
    Answer(503, "ServiceUnavailable", StorageUnavailable, "the service is unavailable"),
    Answer(500, "InternalError", StorageUnavailable, "an internal error in the store"),
    Answer(429, ANY, StorageUnavailable, "throttled: too many requests"),
    Answer(400, "RequestTimeout", OperationTimeout, "the connection was idle past S3's timeout"),
    Answer(408, ANY, OperationTimeout, "the request timed out"),
    # Credentials a worker renews on its own (assumed roles, instance profiles), and a clock
    # that NTP puts right: the worker's condition, not the job's.
    Answer(400, "ExpiredToken", StorageUnavailable, "the session token expired"),
    Answer(400, "TokenRefreshRequired", StorageUnavailable, "the session token must be renewed"),
    Answer(403, "RequestTimeTooSkewed", StorageUnavailable,
           "this host's clock is too far from S3's (check NTP)"),
    Answer(409, "OperationAborted", StorageUnavailable, "a conflicting operation is in progress"),
    Answer(409, "ConditionalRequestConflict", StorageUnavailable,
           "a conflicting write is in progress"),
    Answer(400, "BadDigest", StorageUnavailable, "the bytes were damaged in transit", PUT),
    Answer(400, "IncompleteBody", StorageUnavailable, "the upload was cut short", PUT),
    Answer(307, "TemporaryRedirect", StorageUnavailable, "redirected while DNS updates"),
    Answer(400, "KMS.ThrottlingException", StorageUnavailable, "KMS throttled the key's requests"),
    Answer(500, "KMS.KeyUnavailableException", StorageUnavailable,
           "the KMS key is not available for now"),
    Answer(500, "KMS.KMSInternalException", StorageUnavailable, "an internal error in KMS"),
    Answer(500, "KMS.DependencyTimeoutException", StorageUnavailable, "KMS timed out"),
    # -- refused: the request itself cannot succeed --------------------------------------------
    Answer(400, "InvalidArgument", StorageRefused,
           "an argument is invalid (a malformed version id, say)"),
    Answer(400, "InvalidRequest", StorageRefused, "the request is invalid"),
    Answer(416, "InvalidRange", StorageRefused, "the range cannot be satisfied"),
    Answer(405, "MethodNotAllowed", StorageRefused, "the method is not allowed on this resource"),
    Answer(501, "NotImplemented", StorageRefused, "the store does not implement a header sent"),
    Answer(301, "PermanentRedirect", StorageRefused,
           "the bucket must be addressed at another endpoint (region)"),
)

_SERVER_ERROR = Answer(500, ANY, StorageUnavailable, "the store answered with a server error")
_REFUSED = Answer(400, ANY, StorageRefused, "storage refused the request")
_EXTRAS = ("ArgumentName", "ArgumentValue", "Condition", "StorageClass", "AccessTier",
           "ResourceType", "Method")


def _index(rows: Iterable[Answer]) -> dict[tuple[Operation, int, str, bool], Answer]:
    index: dict[tuple[Operation, int, str, bool], Answer] = {}
    for row in rows:
        for operation in row.operations:
            key = (operation, row.status, row.code, row.delete_marker)
            if key in index:
                raise ValueError(f"two rows for {key}")
            index[key] = row
    return index


_BY_ANSWER = _index(ANSWERS)
_BY_CODE = {(op, code, marker): row for (op, _, code, marker), row in reversed(_BY_ANSWER.items())
            if code != ANY}  # reversed: where a code has two statuses, the first row wins


def classify(operation: Operation, status: int | None, code: str, *,
             delete_marker: bool = False) -> Answer:
    """The row for S3's answer. A delete marker's rows first; then the row of (status, code),
    of the code alone (an S3 look-alike may send a known code with another status), of the
    status alone; then any other 5xx is weather; then the code's family (``KMS.*``); anything
    else is refused."""
    status = status or 0
    for marker in (True, False) if delete_marker else (False,):
        for found in (_BY_ANSWER.get((operation, status, code, marker)),
                      _BY_CODE.get((operation, code, marker)),
                      _BY_ANSWER.get((operation, status, ANY, marker))):
            if found is not None:
                return found
    if not status or status >= 500:
        return _SERVER_ERROR
    family = _BY_CODE.get((operation, code.partition(".")[0] + ".*", False))
    return family if "." in code and family is not None else _REFUSED


def row_of(exc: ClientError, operation: Operation) -> Answer:
    """The table's row for S3's answer ``exc`` to ``operation``."""
    error = exc.response.get("Error", {})
    metadata = exc.response.get("ResponseMetadata", {})
    headers = {str(k).lower(): str(v) for k, v in metadata.get("HTTPHeaders", {}).items()}
    status = metadata.get("HTTPStatusCode")
    marker = (headers.get("x-amz-delete-marker", "").lower() == "true"
              or error.get("ResourceType") == "DeleteMarker")
    return classify(operation, status, str(error.get("Code") or status or ""),
                    delete_marker=marker)


def storage_error(exc: ClientError, operation: Operation, where: str) -> ClipError:
    """Clipline's error for S3's answer ``exc`` to ``operation`` on ``where``: the row's error,
    with its meaning and what S3 said (status, code, message, the telling elements)."""
    row = row_of(exc, operation)
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    said = " ".join(dict.fromkeys(str(part) for part in (status, error.get("Code")) if part))
    text = str(error.get("Message", "")).strip()
    details = [f"{name}={error[name]}" for name in _EXTRAS if error.get(name)]
    answer = "; ".join([": ".join(part for part in (said, text) if part), *details])
    return row.error(f"{where}: {row.meaning} ({answer})")


def make_client(settings: Settings) -> Any:
    """One S3 client per process (clients are thread-safe; sessions are not shared)."""
    config = Config(
        region_name=settings.s3_region,
        connect_timeout=settings.s3_connect_timeout_seconds,
        read_timeout=settings.s3_read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": settings.s3_max_attempts},
        max_pool_connections=settings.s3_max_pool_connections,
        # SigV4 for presigned URLs too (botocore's default there is SigV2, which cannot sign
        # a PUT's Content-Length, and which AWS is retiring).
        signature_version="s3v4",
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=settings.s3_endpoint_url, config=config
    )


def _pinned(bucket: str, key: str, version: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version and version.startswith('"'):
        args["IfMatch"] = version
    elif version:
        args["VersionId"] = version
    return args


class S3Store:
    def __init__(self, client: Any, *, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.client = client
        self.max_bytes = max_bytes

    def get(self, bucket: str, key: str, *, version: str | None = None) -> bytes:
        where = f"s3://{bucket}/{key}"
        with _translated(where, "get"):
            response = self.client.get_object(**_pinned(bucket, key, version))
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
        with _translated(f"s3://{bucket}/{key}", "put"):
            self.client.put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                Metadata=dict(metadata or {}),
            )

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        """Every key under ``prefix``, in S3's order, one page (1,000 keys) at a time."""
        with _translated(f"s3://{bucket}/{prefix}", "list"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    yield item["Key"]

    def presign(self, bucket: str, key: str, expires: int = 3600) -> str:
        """A time-limited GET URL for the object (signed locally: no request is made)."""
        with _translated(f"s3://{bucket}/{key}", "get"):
            url: str = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires)
        return url

    def presign_put(self, bucket: str, key: str, *, content_type: str, size: int,
                    sha256: str | None = None, expires: int = 900) -> SignedPut:
        """A time-limited PUT URL (signed locally: no request is made). Content-Length and
        Content-Type (and x-amz-checksum-sha256 when ``sha256`` is given) are signed headers:
        S3 refuses a PUT whose length, type or bytes differ (403 SignatureDoesNotMatch, 400
        BadDigest)."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, "ContentType": content_type,
                                  "ContentLength": size}
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        if sha256 is not None:
            params["ChecksumSHA256"] = headers["x-amz-checksum-sha256"] = (
                base64.b64encode(bytes.fromhex(sha256)).decode("ascii"))
        at = datetime.now(UTC)
        with _translated(f"s3://{bucket}/{key}", "put"):
            url: str = self.client.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=expires)
        return SignedPut(url, headers, at + timedelta(seconds=expires))

    def head(self, bucket: str, key: str, *, version: str | None = None) -> dict[str, Any]:
        """Content type, length and user metadata of an object (for checks and status pages);
        ``version`` pins it as ``get`` does."""
        with _translated(f"s3://{bucket}/{key}", "head"):
            found = self.client.head_object(**_pinned(bucket, key, version))
        return {"content_type": found.get("ContentType"), "size": found.get("ContentLength"),
                "metadata": found.get("Metadata", {}), "etag": found.get("ETag")}


@contextmanager
def _translated(where: str, operation: Operation) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        raise storage_error(exc, operation, where) from exc
    except (ConnectTimeoutError, ReadTimeoutError) as exc:
        raise OperationTimeout(f"{where}: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(f"{where}: {exc}") from exc
