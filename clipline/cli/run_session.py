"""An embedded folder run held open: rounds of scan → jobs → drain into DST, and their summary.

``clipline run SRC DST`` is one round (and a few more drains while transient failures wait out
their backoff); ``clipline run SRC DST --watch`` is a round each time SRC has changed. Both
hold DST's lock (``pipeline.embedded.run_lock``) and its ledger for as long as the session
lives, so everything that resumes a run (the ledger's jobs, the history batch, output names)
is the same for both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline import fields
from pipeline.adapters.storage.file import FileStore
from pipeline.embedded import EmbeddedRun, Summary, batch_id_for
from pipeline.errors import InvalidField, InvalidOptions
from pipeline.jobs import BatchCounts, JobStatus
from pipeline.options import OutputOptions
from pipeline.ports import Segmenter
from pipeline.run_files import Scan, shown_name
from pipeline.run_names import OutputOwners, plan_outputs
from pipeline.settings import Settings


def check_folders(src: Path, dst: Path) -> None:
    """Refuse folders the run cannot work with before anything is written."""
    for what, path in (("SRC", src), ("DST", dst)):
        problem = fields.text_problem(str(path), fields.FOLDER)
        if problem:
            raise InvalidField(what, f"{shown_name(str(path))} {problem}")
    if not src.is_dir():
        raise InvalidOptions(f"SRC {src} is not a folder")
    if dst == src or src in dst.parents:
        raise InvalidOptions(f"DST {dst} must not be inside SRC {src}")
    if dst in src.parents:
        raise InvalidOptions(f"SRC {src} must not be inside DST {dst}: cut-outs would land "
                             "among the sources")


class RunSession:
    """The rounds of one folder run into ``dst``; the caller holds DST's lock and owns
    ``ledger`` (the SQLite ledger in ``DST/.clipline``)."""

    def __init__(self, ledger: Any, segmenter: Segmenter, src: Path, dst: Path,
                 options: OutputOptions, settings: Settings, *, batch_size: int,
                 threads: int) -> None:
        self.ledger, self.segmenter = ledger, segmenter
        self.src, self.dst, self.options, self.settings = src, dst, options, settings
        self.batch_size, self.threads = batch_size, threads
        self.batch = batch_id_for(src, options, settings.model)
        self.found = Scan()
        self.succeeded = 0
        self.already_done: int | None = None
        self._engine: EmbeddedRun | None = None
        self._counts: BatchCounts | None = None
        self._started: float | None = None
        # We hold the lock: any lease left is from a run that died, and so is any half-written
        # file.
        ledger.reap(every_lease=True)
        for part in dst.rglob(".*.part"):
            part.unlink()

    def submit(self, found: Scan, ready: Mapping[str, str] | None = None) -> int:
        """Jobs for the files of ``found`` (only those of ``ready``, when given: the others
        are still being written); returns how many jobs of the batch are queued.

        Output names are planned over every file found, so a file that settles later does
        not rename the others' cut-outs."""
        self.found = found
        limits = self.settings.decode_limits
        engine = EmbeddedRun(self.ledger, FileStore(max_bytes=limits.max_bytes), self.segmenter,
                             model=self.settings.model, batch_size=self.batch_size,
                             threads=self.threads, limits=limits,
                             plan=plan_outputs(found.files, self.options.extension))
        engine.owners = OutputOwners(engine.recorded_outputs)
        engine.submit(self.src, found.files if ready is None else ready, self.options,
                      self.batch)
        engine.supersede(self.src, self.batch, found.files)
        # What is not a job is not in the ledger's counts: the batch notes it for `status`.
        self.ledger.set_batch_meta(self.batch, {
            "refused": Summary(refused=found.refused).refused_by_reason,
            "refused_names": [shown_name(r.name) for r in found.refused[:10]],
        })
        self._engine = engine
        self._counts = self.ledger.batch_counts(self.batch)
        if self.already_done is None:
            self.already_done = self._counts[JobStatus.SUCCEEDED]
            self._started = time.perf_counter()  # the summary's rate counts the work only
        return self._counts[JobStatus.QUEUED]

    def drain(self, on_progress: Callable[[int], None] = lambda n: None) -> tuple[int, int]:
        """Run every job that is due; returns (cut out, failed for good) by this drain."""
        if self._engine is None or self._counts is None:
            raise RuntimeError("drain() before submit()")
        self._engine.on_progress = on_progress
        self._engine.drain(self.batch, self.dst)
        before, after = self._counts, self.ledger.batch_counts(self.batch)
        self._counts = after
        done = after[JobStatus.SUCCEEDED] - before[JobStatus.SUCCEEDED]
        self.succeeded += done
        return done, after[JobStatus.DEAD] - before[JobStatus.DEAD]

    @property
    def done(self) -> int:
        """Files whose current version is cut out, as of the last submit or drain."""
        return self._counts[JobStatus.SUCCEEDED] if self._counts is not None else 0

    def queued(self) -> int:
        counts: BatchCounts = self.ledger.batch_counts(self.batch)
        return counts[JobStatus.QUEUED]

    def summary(self) -> Summary:
        now = time.perf_counter()
        after = self.ledger.batch_counts(self.batch)
        dead = self.ledger.list_jobs(batch_id=self.batch, status=JobStatus.DEAD, limit=10)
        return Summary(
            batch_id=self.batch,
            failures=[(j.key, j.last_error_code or "", j.last_error_message or "")
                      for j in dead],
            total=after.total, already_done=self.already_done or 0,
            succeeded=self.succeeded, failed=dict(after.dead_by_reason),
            skipped_files=self.found.skipped, seconds=now - (self._started or now),
            remaining=after[JobStatus.QUEUED] + after[JobStatus.RUNNING],
            refused=self.found.refused,
        )
