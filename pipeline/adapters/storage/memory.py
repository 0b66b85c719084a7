"""An in-memory ``ObjectStore`` for unit tests: versions, missing keys and metadata included.

``presign_put`` hands out ``memory://`` URLs; ``receive_put`` is the client's PUT to one, held
to what S3 holds a presigned PUT to (the signed length, type and checksum, the expiry)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pipeline.errors import AccessDenied, ObjectMissing, ObjectTooLarge, StorageRefused
from pipeline.ports import SignedPut


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)


class MemoryStore:
    def __init__(self, *, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.puts = 0
        self.signed: dict[str, tuple[str, str, SignedPut]] = {}  # url -> (bucket, key, put)
        self._lock = threading.Lock()

    def get(self, bucket: str, key: str, *, version: str | None = None) -> bytes:
        found = self.objects.get((bucket, key))
        if found is None:
            raise ObjectMissing(f"no object s3://{bucket}/{key}")
        if len(found.data) > self.max_bytes:
            raise ObjectTooLarge(f"s3://{bucket}/{key} is over {self.max_bytes} bytes")
        return found.data

    def put(
        self, bucket: str, key: str, data: bytes, *, content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        with self._lock:
            self.objects[(bucket, key)] = StoredObject(data, content_type, dict(metadata or {}))
            self.puts += 1

    def presign_put(self, bucket: str, key: str, *, content_type: str, size: int,
                    sha256: str | None = None, expires: int = 900) -> SignedPut:
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        if sha256 is not None:
            headers["x-amz-checksum-sha256"] = base64.b64encode(bytes.fromhex(sha256)).decode()
        url = f"memory://{bucket}/{key}?signature={secrets.token_hex(8)}"
        signed = SignedPut(url, headers, datetime.now(UTC) + timedelta(seconds=expires))
        self.signed[url] = (bucket, key, signed)
        return signed

    def receive_put(self, url: str, data: bytes, headers: Mapping[str, str]) -> None:
        """A client's PUT to a presigned ``url``: refused as S3 would refuse it."""
        if url not in self.signed:
            raise AccessDenied(f"{url} was not signed here")
        bucket, key, signed = self.signed[url]
        if datetime.now(UTC) >= signed.expires_at:
            raise AccessDenied(f"{url} has expired")
        sent = {**headers, "Content-Length": str(len(data))}
        if any(sent.get(name) != value for name, value in signed.headers.items()):
            raise AccessDenied(f"the PUT's headers differ from the signed ones ({url})")
        digest = signed.headers.get("x-amz-checksum-sha256")
        if digest and base64.b64encode(hashlib.sha256(data).digest()).decode() != digest:
            raise StorageRefused(f"the bytes do not match the signed checksum ({url})")
        self.put(bucket, key, data, content_type=signed.headers["Content-Type"])
