"""An in-memory ``ObjectStore`` for unit tests: versions, missing keys and metadata included."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.errors import ObjectMissing, ObjectTooLarge


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
