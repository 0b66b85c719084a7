"""The embedded run: a folder of images in, a folder of cut-outs out, on one machine.

``clipline run SRC DST`` keeps its ledger in SQLite under ``DST/.clipline/``. Every image is a
job, keyed by its path, size and modification time and the output options, so a second run
(after Ctrl-C, a SIGKILL, or new files) does only what is not done yet. One run holds
``DST/.clipline/lock`` at a time; holding it, a run knows every lease left in the ledger belongs
to a run that died, and takes those jobs back at start.

Decoding and encoding run on a thread pool (Pillow and NumPy release the GIL) while the main
thread feeds the model batches, so the CPU stays busy with both.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np

from pipeline import logs
from pipeline.errors import ClipError, ModelError
from pipeline.imaging.decode import DEFAULT_LIMITS, DecodeLimits
from pipeline.jobs import BatchCounts, Claim, Job, JobSpec, JobStatus, canonical_json
from pipeline.options import OutputOptions
from pipeline.ports import ObjectStore, Segmenter
from pipeline.process import Prepared, finish, prepare

# Files named like pictures become jobs. Formats the decoder refuses (SVG, AVIF, HEIC, ...) are
# included on purpose: the user sees "unsupported_format" for them instead of silence.
IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".svg",
    ".avif", ".heic", ".heif", ".ico", ".psd", ".jp2", ".tga",
})
STATE_DIR = ".clipline"
log = logs.get(__name__)


class RunLedger(Protocol):
    """What an embedded run needs of the ledger (``SqlLedger`` on SQLite provides it)."""

    def create_batch(self, tenant: str = ..., *, label: str | None = ...,
                     meta: Any = ..., batch_id: uuid.UUID | None = ...) -> uuid.UUID: ...
    def submit_many(self, specs: Any, *, tenant: str = ..., batch_id: uuid.UUID | None = ...,
                    max_attempts: int | None = ...) -> Any: ...
    def claim_next(self, limit: int, *, worker: str,
                   batch_id: uuid.UUID | None = ...) -> list[Claim]: ...
    def complete(self, job_id: uuid.UUID, token: uuid.UUID, result: Any) -> Any: ...
    def fail(self, job_id: uuid.UUID, token: uuid.UUID, error: ClipError) -> Any: ...
    def reap(self, limit: int = ..., *, every_lease: bool = ...) -> Any: ...
    def batch_counts(self, batch_id: uuid.UUID) -> BatchCounts: ...
    def list_jobs(self, **filters: Any) -> list[Job]: ...


class RunLocked(Exception):
    """Another run is writing into the same output folder."""


@dataclass
class Summary:
    total: int = 0
    already_done: int = 0
    succeeded: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    skipped_files: int = 0
    seconds: float = 0.0
    remaining: int = 0
    batch_id: uuid.UUID | None = None
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    """(key, reason, message) of the first few dead jobs."""

    @property
    def processed(self) -> int:
        return self.succeeded + sum(self.failed.values())


def find_images(src: Path) -> tuple[list[str], int]:
    """Relative POSIX paths of the image files under ``src`` (sorted), and how many other files
    were passed over. Hidden files and folders are ignored."""
    found, skipped = [], 0
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(root, name).relative_to(src).as_posix())
            else:
                skipped += 1
    return found, skipped


def output_name(key: str, options: OutputOptions) -> str:
    """``shoes/red.jpg`` → ``shoes/red.png``: outputs mirror input names."""
    return str(PurePosixPath(key).with_suffix(options.extension))


def batch_id_for(src: Path, options: OutputOptions, model: str) -> uuid.UUID:
    """One batch per (source folder, options, model): reruns add to the same batch."""
    ident = canonical_json([str(src.resolve()), options.normalised(), model])
    return uuid.uuid5(uuid.NAMESPACE_URL, "clipline-run:" + ident)


@contextmanager
def run_lock(dst: Path) -> Iterator[None]:
    state = dst / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RunLocked(f"another clipline run is writing into {dst}") from exc
        yield


@dataclass
class EmbeddedRun:
    """Runs every pending job of one batch through decode → model → compose → encode → write."""

    ledger: RunLedger
    store: ObjectStore
    segmenter: Segmenter
    model: str
    batch_size: int = 8
    threads: int = 2
    limits: DecodeLimits = DEFAULT_LIMITS
    on_progress: Callable[[int], None] = lambda n: None
    worker: str = field(default_factory=lambda: f"embedded-{os.getpid()}")

    def submit(self, src: Path, keys: list[str], options: OutputOptions,
               batch_id: uuid.UUID) -> None:
        self.ledger.create_batch(label=f"run {src}", batch_id=batch_id)
        normalised = options.normalised()
        self.ledger.submit_many(
            (JobSpec(str(src.resolve()), key, _version(src / key), normalised, self.model)
             for key in keys),
            batch_id=batch_id,
        )

    def drain(self, batch_id: uuid.UUID, dst: Path) -> None:
        """Process until no job of the batch is due; failures are recorded, never raised."""
        with ThreadPoolExecutor(self.threads, thread_name_prefix="clipline-io") as pool:
            inflight: deque[tuple[Claim, Future[Prepared]]] = deque()
            finishing: list[Future[None]] = []
            while True:
                want = 2 * self.batch_size - len(inflight)
                if want > 0:
                    for claim in self.ledger.claim_next(want, worker=self.worker,
                                                        batch_id=batch_id):
                        inflight.append((claim, pool.submit(self._prepare, claim)))
                if not inflight:
                    break
                batch = [inflight.popleft() for _ in range(min(self.batch_size, len(inflight)))]
                finishing.extend(self._infer(batch, pool, dst))
                finishing = [f for f in finishing if not _settled(f)]
            for f in finishing:
                f.result()

    def _prepare(self, claim: Claim) -> Prepared:
        job = claim.job
        return prepare(self.store.get(job.bucket, job.key), self.segmenter.input_size,
                       self.limits)

    def _infer(self, batch: list[tuple[Claim, Future[Prepared]]], pool: ThreadPoolExecutor,
               dst: Path) -> list[Future[None]]:
        ready: list[tuple[Claim, Prepared]] = []
        for claim, future in batch:
            try:
                ready.append((claim, future.result()))
            except Exception as exc:  # noqa: BLE001 - the outer edge: every failure is recorded
                self._fail(claim, exc)
        if not ready:
            return []
        try:
            started = time.perf_counter()
            masks = self.segmenter.predict(np.stack([p.model_input for _, p in ready]))
            share = (time.perf_counter() - started) / len(ready)
        except ClipError as exc:
            for claim, _ in ready:
                self._fail(claim, exc)
            if isinstance(exc, ModelError):
                raise
            return []
        for _, prepared in ready:
            prepared.timings.seconds["infer"] = share
        return [pool.submit(self._finish, claim, prepared, mask, dst)
                for (claim, prepared), mask in zip(ready, masks, strict=True)]

    def _finish(self, claim: Claim, prepared: Prepared, mask: Any, dst: Path) -> None:
        job = claim.job
        try:
            options = OutputOptions.parse(job.options)
            cut = finish(prepared, mask, options, model=self.model)
            name = output_name(job.key, options)
            with prepared.timings.stage("put"):
                self.store.put(str(dst), name, cut.data, content_type=cut.content_type)
            result = {**cut.metadata, "output": name, "timings_ms": prepared.timings.ms()}
            self.ledger.complete(job.id, claim.token, result)
        except Exception as exc:  # noqa: BLE001 - the outer edge: every failure is recorded
            self._fail(claim, exc)
            return
        self.on_progress(1)

    def _fail(self, claim: Claim, exc: Exception) -> None:
        error = exc if isinstance(exc, ClipError) else ClipError(f"{type(exc).__name__}: {exc}")
        if not isinstance(exc, ClipError):
            log.error("job_crashed", job_id=str(claim.job.id), key=claim.job.key,
                      exc_info=exc)
        job = self.ledger.fail(claim.job.id, claim.token, error)
        log.info("job_failed", key=claim.job.key, reason=error.reason, message=error.message,
                 status=job.status.value)
        if job.status is JobStatus.DEAD:
            self.on_progress(1)


def _settled(future: Future[None]) -> bool:
    if future.done():
        future.result()  # a bug in the finishing code must not vanish with its future
        return True
    return False


def _version(path: Path) -> str:
    """A file's version: changed bytes (size or mtime) make a new job, the same file does not."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"
