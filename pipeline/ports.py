"""The small Protocols the core depends on. Adapters implement them; fakes ship in-package.

Only ``pipeline/adapters`` may import the vendor libraries behind these ports.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from pipeline.errors import ClipError
    from pipeline.jobs import Claim, Dispatch, Job


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


@runtime_checkable
class Segmenter(Protocol):
    """A segmentation model: uint8 RGB images at model size in, float masks out."""

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the model expects."""
        ...

    def predict(self, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """``images`` is [N, H, W, 3] uint8 RGB; returns [N, H, W] float32 in [0, 1]."""
        ...


class Segmenters(Protocol):
    """The models a worker serves side by side, each under its spec's name (``u2net``)."""

    @property
    def served(self) -> tuple[str, ...]:
        """The names served, the default first."""
        ...

    def get(self, model: str) -> Segmenter:
        """The segmenter of ``model`` (built on its first ``predict``, not here); raises
        ``ModelNotServed`` when ``model`` is not one of ``served``."""
        ...


class Writes(Protocol):
    """Writing one object (S3, a folder, memory)."""

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None: ...


class ObjectStore(Writes, Protocol):
    """Where source images are read and cut-outs written (S3, a folder, memory)."""

    def get(self, bucket: str, key: str, *, version: str | None = None) -> bytes: ...


@dataclass(frozen=True, slots=True)
class SignedPut:
    """A presigned PUT (``UploadStore.presign_put``): send the bytes to ``url`` with exactly
    ``headers``, before ``expires_at``."""

    url: str
    headers: dict[str, str]
    expires_at: datetime


class UploadStore(Writes, Protocol):
    """Where uploaded images go (``pipeline.uploads``): written by the API, or by the client
    itself through a presigned PUT."""

    def presign_put(self, bucket: str, key: str, *, content_type: str, size: int,
                    sha256: str | None = None, expires: int = 900) -> SignedPut:
        """A URL that takes one PUT of exactly ``size`` bytes of ``content_type`` (and of that
        sha256, hex, when given) to ``bucket/key`` for ``expires`` seconds; signed locally."""
        ...


class JobLedger(Protocol):
    """The part of the ledger a worker needs: lease a job, keep it, finish it."""

    def claim(self, job_id: uuid.UUID, *, worker: str) -> Claim | None: ...

    def heartbeat(self, job_id: uuid.UUID, token: uuid.UUID) -> datetime: ...

    def complete(
        self, job_id: uuid.UUID, token: uuid.UUID, result: Mapping[str, Any]
    ) -> Job: ...

    def fail(self, job_id: uuid.UUID, token: uuid.UUID, error: ClipError) -> Job: ...

    def mark_published(self, job_id: uuid.UUID, at: datetime) -> None: ...


class Queue(Protocol):
    """Wake-up messages to workers (Celery on Redis). Losing one costs time, never the job:
    the ledger is the truth and the reconciler re-publishes what it says is missing."""

    def publish(self, dispatches: Sequence[Dispatch]) -> None:
        """Send one message per dispatch, routed by priority, held back by its delay."""
        ...

    def depth(self) -> int:
        """Messages waiting in the broker, all queues together."""
        ...

    def forgot(self) -> bool:
        """True once after the broker lost what it held (restarted empty, flushed), and on the
        first call against a new broker; the reconciler then re-sends every queued job."""
        ...
