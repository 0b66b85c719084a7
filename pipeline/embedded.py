"""The embedded run: a folder of images in, a folder of cut-outs out, on one machine.

``clipline run SRC DST`` keeps its ledger in SQLite under ``DST/.clipline/``. Every image is a
job, keyed by its path, size and modification time and the output options, so a second run
(after Ctrl-C, a SIGKILL, or new files) does only what is not done yet. One run holds
``DST/.clipline/lock`` at a time; holding it, a run knows every lease left in the ledger belongs
to a run that died, and takes those jobs back at start.

**Output names** are unique by construction (``pipeline.run_names`` has the whole rule):
``a/b.jpg`` → ``a/b.png``; when images of one folder share a stem (``shoe.jpg`` and
``shoe.png``, compared ignoring case) each keeps its extension too (``shoe.jpg.png``,
``shoe.png.png``); a name still wanted twice is refused (``output_collision``) for every source
but the first in sorted order. An output file recorded by a job of another source (another
SRC into the same DST, or a source that has left) is never overwritten: that job fails with
``output_collision``. A source run again with other options replaces its own cut-out.

**Layers** (``--layers``): the model-size mask of each cut-out is kept in the run's state
folder, ``DST/.clipline/layers/<output name>.mask.png`` (``layers_mask_name``), and its name is
recorded in the job's result (``layers_mask``), so ``clipline recompose`` can remake a cut-out
with parts switched on or off. Not beside the cut-out: DST stays a folder of cut-outs only,
and no mask name can ever be the name of another source's cut-out (``pipeline.run_names``).

**File names are data:** a file the ledger cannot key (not UTF-8, a control character, too
long) or cannot look at, and a folder that cannot be listed, are refused one by one with a
reason (``pipeline.run_files``); they are reported and counted, never fatal.

**A job's history follows the file's current version.** The run's batch holds one job per file
found: the job of its current version (path, size and mtime). Jobs of a superseded version, or
of a file that has left SRC, are moved to a second batch, the run's history (queued ones are
cancelled first), so an old failure stops counting once the file has changed, two jobs never
write one output, and ``clipline status --run DST --batch ID`` counts what the summary counts.

Decoding and encoding run on a thread pool (Pillow and NumPy release the GIL) while the main
thread feeds the model batches, so the CPU stays busy with both.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline import logs
from pipeline.errors import ClipError, ModelError, UsageError
from pipeline.imaging.decode import DEFAULT_LIMITS, DecodeLimits
from pipeline.jobs import BatchCounts, Claim, Job, JobSpec, JobStatus, canonical_json
from pipeline.options import OutputOptions
from pipeline.paging import Page
from pipeline.ports import ObjectStore, Segmenter
from pipeline.process import Prepared, finish, prepare
from pipeline.run_files import IMAGE_SUFFIXES, Refusal
from pipeline.run_names import OutputOwners, OutputPlan, Source

__all__ = ["IMAGE_SUFFIXES", "STATE_DIR", "EmbeddedRun", "RunLocked", "Summary"]

STATE_DIR = ".clipline"
LAYERS_DIR = f"{STATE_DIR}/layers"
HISTORY_OF = "superseded_versions_of"
"""The meta key that marks a run's history batch (the batch whose superseded jobs it keeps)."""
PAGE = 2000
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
    def page_jobs(self, **filters: Any) -> Page: ...
    def cancel(self, job_id: uuid.UUID) -> Any: ...
    def source_index(self, batch_id: uuid.UUID) -> list[tuple[uuid.UUID, str, str | None,
                                                             JobStatus]]: ...
    def move_to_batch(self, job_ids: list[uuid.UUID], batch_id: uuid.UUID) -> int: ...
    def set_batch_meta(self, batch_id: uuid.UUID, meta: Mapping[str, Any]) -> None: ...


class RunLocked(UsageError):
    """Another run is writing into the same output folder."""

    reason = "run_locked"


class OutputFolderUnusable(UsageError):
    """DST (or its ``.clipline`` state folder) cannot be created or written."""

    reason = "output_folder_unusable"


@dataclass
class Summary:
    total: int = 0
    """Files with a job: one per image file found whose name the ledger can hold."""
    already_done: int = 0
    succeeded: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    skipped_files: int = 0
    seconds: float = 0.0
    remaining: int = 0
    batch_id: uuid.UUID | None = None
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    """(key, reason, message) of the first few dead jobs."""
    refused: list[Refusal] = field(default_factory=list)
    """Files and folders of SRC that are not jobs (``pipeline.run_files``)."""

    @property
    def processed(self) -> int:
        return self.succeeded + sum(self.failed.values())

    @property
    def refused_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for refusal in self.refused:
            counts[refusal.reason] = counts.get(refusal.reason, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        return not (self.failed or self.refused or self.remaining)


def batch_id_for(src: Path, options: OutputOptions, model: str) -> uuid.UUID:
    """One batch per (source folder, options, model): reruns add to the same batch."""
    ident = canonical_json([str(src.resolve()), options.normalised(), model])
    return uuid.uuid5(uuid.NAMESPACE_URL, "clipline-run:" + ident)


def layers_mask_name(output: str) -> str:
    """Where (under DST) the layers mask of the cut-out named ``output`` is kept."""
    return f"{LAYERS_DIR}/{output}.mask.png"


def history_id_for(batch_id: uuid.UUID) -> uuid.UUID:
    """The batch that keeps the jobs of superseded versions of ``batch_id``'s files."""
    return uuid.uuid5(batch_id, "superseded")


@contextmanager
def run_lock(dst: Path) -> Iterator[None]:
    state = dst / STATE_DIR
    try:
        state.mkdir(parents=True, exist_ok=True)
        handle = open(state / "lock", "w")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise OutputFolderUnusable(f"cannot write into DST {dst}: {exc.strerror}") from exc
    with handle:
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
    plan: OutputPlan = field(default_factory=lambda: OutputPlan({}, {}))
    owners: OutputOwners = field(default_factory=lambda: OutputOwners(list))

    def submit(self, src: Path, files: Mapping[str, str], options: OutputOptions,
               batch_id: uuid.UUID) -> None:
        """One job per file (``files``: key → version); the ledger folds in what it has."""
        self.ledger.create_batch(label=f"run {src}", batch_id=batch_id)
        normalised = options.normalised()
        bucket = str(src.resolve())
        self.ledger.submit_many(
            (JobSpec(bucket, key, version, normalised, self.model)
             for key, version in files.items()),
            batch_id=batch_id,
        )

    def supersede(self, src: Path, batch_id: uuid.UUID, files: Mapping[str, str]) -> int:
        """Leave in the batch only the job of each file's current version: move the others
        (superseded versions, files gone from SRC) to the history batch, cancelling queued
        ones first, and bring back a current version's job filed there before (a file put
        back as it was). Returns how many jobs moved out."""
        history = history_id_for(batch_id)
        stale, current = [], set()
        for job_id, key, version, status in self.ledger.source_index(batch_id):
            if files.get(key) == version:
                current.add(key)
                continue
            if status is JobStatus.QUEUED or status is JobStatus.RUNNING:
                self.ledger.cancel(job_id)
            stale.append(job_id)
        if stale:
            self.ledger.create_batch(label=f"run {src}: superseded versions", batch_id=history,
                                     meta={HISTORY_OF: str(batch_id)})
            self.ledger.move_to_batch(stale, history)
            log.info("jobs_superseded", batch_id=str(batch_id), count=len(stale))
        if len(current) < len(files):
            back = [job_id for job_id, key, version, _ in self.ledger.source_index(history)
                    if key not in current and files.get(key) == version]
            self.ledger.move_to_batch(back, batch_id)
        for job in self.ledger.list_jobs(batch_id=history, status=JobStatus.QUEUED,
                                         limit=10_000):
            self.ledger.cancel(job.id)  # re-driven by hand: a superseded version is not run
        return len(stale)

    def recorded_outputs(self) -> Iterator[tuple[str, Source]]:
        """(output, source) of every succeeded job of this DST's ledger, oldest finish first:
        what ``OutputOwners`` loads."""
        done: list[Job] = []
        after: str | None = None
        while True:
            page = self.ledger.page_jobs(status=JobStatus.SUCCEEDED, after=after, limit=PAGE)
            done.extend(j for j in page.items if j.result and j.result.get("output"))
            if (after := page.next_cursor) is None:
                break
        done.sort(key=lambda j: (j.finished_at or j.updated_at, j.id))
        for job in done:
            yield str(job.result["output"]), (job.bucket, job.key)  # type: ignore[index]

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
                        inflight.append((claim, pool.submit(self._prepare, claim, dst)))
                if not inflight:
                    break
                batch = [inflight.popleft() for _ in range(min(self.batch_size, len(inflight)))]
                finishing.extend(self._infer(batch, pool, dst))
                finishing = [f for f in finishing if not _settled(f)]
            for f in finishing:
                f.result()

    def _prepare(self, claim: Claim, dst: Path) -> Prepared:
        job = claim.job
        name = self.plan.name_for(job.key)  # before any work: a refused name fails at once
        self.owners.check(name, (job.bucket, job.key), exists=os.path.lexists(dst / name))
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
            name = self.plan.name_for(job.key)
            stored: dict[str, str] = {}
            with prepared.timings.stage("put"):
                if cut.layers_mask is not None:
                    stored["layers_mask"] = layers_mask_name(name)
                    self.store.put(str(dst), stored["layers_mask"], cut.layers_mask,
                                   content_type="image/png")
                self.store.put(str(dst), name, cut.data, content_type=cut.content_type)
            result = {**cut.metadata, "output": name, **stored,
                      "timings_ms": prepared.timings.ms()}
            self.ledger.complete(job.id, claim.token, result)
            self.owners.record(name, (job.bucket, job.key))
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

