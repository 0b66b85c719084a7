"""What the chaos benchmark measures: the broker against the ledger every second while it runs,
then, at the end, what the ledger, ``job_events`` and the output bucket say, against the goal.

The goal (issue 12): every good job succeeded; every bad one dead with its own reason; no job
left queued or running; no job with two ``succeeded`` events; one output object per success.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

import redis
from redis.exceptions import RedisError
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from pipeline.adapters.ledger.schema import job_events, jobs

QUEUES = ("interactive", "bulk")
# kombu's Redis transport keeps one list per queue and priority step (0 is the bare name).
LISTS = tuple(q if step == 0 else f"{q}\x06\x16{step}" for q in QUEUES for step in (0, 3, 6, 9))
UNACKED = "unacked"  # delivered to a worker, not acknowledged yet (or held for a countdown)
PENDING = ("queued", "running")


class Plan(Protocol):
    @property
    def idempotency_key(self) -> str: ...

    @property
    def expect(self) -> str | None: ...  # None: must succeed; else the reason it must die with


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    waiting: int | None  # in the lists; None: Redis did not answer
    unacked: int | None
    pending: int | None  # queued + running jobs; None: PostgreSQL did not answer

    @property
    def messages(self) -> int | None:
        return None if self.waiting is None or self.unacked is None else self.waiting + self.unacked


class Sampler(threading.Thread):
    """Broker messages and pending jobs, every second, until ``halt``."""

    def __init__(self, redis_url: str, db_url: str) -> None:
        super().__init__(daemon=True, name="chaos-sampler")
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.engine = create_engine(db_url, pool_pre_ping=True,
                                    connect_args={"connect_timeout": 2})
        self.samples: list[Sample] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(1.0):
            self.samples.append(self._sample())

    def halt(self) -> None:
        self._halt.set()
        self.join(timeout=10)
        self.engine.dispose()

    def settled_after(self, moment: float) -> bool:
        """Whether the latest sample, taken after ``moment``, found no pending job."""
        last = self.samples[-1] if self.samples else None
        return last is not None and last.at >= moment and last.pending == 0

    def _sample(self) -> Sample:
        at = time.monotonic()
        waiting = unacked = pending = None
        try:
            pipe = self.redis.pipeline(transaction=False)
            for name in LISTS:
                pipe.llen(name)
            pipe.hlen(UNACKED)
            *lengths, unacked = pipe.execute()
            waiting = sum(lengths)
        except RedisError:
            pass  # flushed or restarting: no figure this second
        try:
            with self.engine.connect() as conn:
                pending = conn.execute(select(func.count()).select_from(jobs)
                                       .where(jobs.c.status.in_(PENDING))).scalar_one()
        except SQLAlchemyError:
            pass  # PostgreSQL restarting
        return Sample(at, waiting, unacked, pending)


def _ledger(db_url: str) -> tuple[list[Any], list[uuid.UUID]]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(jobs.c.id, jobs.c.idempotency_key, jobs.c.status,
                                       jobs.c.last_error_code, jobs.c.attempts)).all()
            twice = conn.execute(select(job_events.c.job_id)
                                 .where(job_events.c.to_status == "succeeded")
                                 .group_by(job_events.c.job_id)
                                 .having(func.count() > 1)).scalars().all()
    finally:
        engine.dispose()
    return list(rows), list(twice)


def _outputs(s3: Any, bucket: str) -> list[str]:
    """The cut-outs' keys; a batch's results manifest (``cutouts/<tenant>/batches/<id>/``,
    written by the reconciler once the batch is done) is not a cut-out."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="cutouts/"):
        keys += [item["Key"] for item in page.get("Contents", [])
                 if "/batches/" not in item["Key"]]
    return keys


def _job_id(key: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(PurePosixPath(key).stem)
    except ValueError:
        return None


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {n}" for k, n in counter.most_common()) or "none"


def _broker(samples: Sequence[Sample], t0: float) -> None:
    seen = [s for s in samples if s.messages is not None and s.pending is not None]
    if not seen:
        print("broker: no sample")
        return
    peak = max(seen, key=lambda s: s.messages or 0)
    per_job = f"{(peak.messages or 0) / peak.pending:.2f}" if peak.pending else "-"
    print(f"broker peak: {peak.messages} messages ({peak.waiting} waiting + {peak.unacked} "
          f"unacked) at {peak.at - t0:.0f} s, when {peak.pending} jobs were pending "
          f"(queued + running): {per_job} messages per pending job")
    every = [s for n, s in enumerate(seen) if n % 30 == 0]
    print("messages / pending jobs, every 30 s: " + ", ".join(
        f"{s.at - t0:.0f} s {s.messages}/{s.pending}" for s in every))
    ratios = [(s.messages or 0) / s.pending for s in seen if s.pending]
    if ratios:
        print(f"messages per pending job, over the {len(ratios)} samples with pending jobs: "
              f"median {statistics.median(ratios):.2f}, max {max(ratios):.2f}")
    # What a queue-length autoscaler reads is the lists alone; ``unacked`` also holds what
    # SIGKILLed workers held, which Redis gives back only after the visibility timeout.
    over = [s for s in seen if (s.waiting or 0) > s.pending]
    worst = max(seen, key=lambda s: (s.waiting or 0) - (s.pending or 0))
    print(f"waiting messages above pending jobs: in {len(over)} of {len(seen)} samples; "
          f"largest excess {max(0, (worst.waiting or 0) - (worst.pending or 0))} "
          f"({worst.waiting} waiting, {worst.pending} pending at {worst.at - t0:.0f} s); "
          f"unacked at the end {seen[-1].unacked}")


def _faults(faults: dict[str, Any], starts: dict[str, int], exits: dict[str, int]) -> None:
    kills = faults["kills"]
    parts = [f"SIGKILL x{kills['main'] + kills['pool child']} ({kills['main']} main, "
             f"{kills['pool child']} pool child)"]
    if faults["none_to_kill"]:
        parts.append(f"{faults['none_to_kill']} kills skipped (no worker process alive)")
    if "flushall" in faults:
        parts.append(f"FLUSHALL at {faults['flushall']:.0f} s")
    if "pg_restart" in faults:
        began, back = faults["pg_restart"]
        parts.append(f"PostgreSQL restarted at {began:.0f} s (up at {back:.0f} s)")
    if "triton_down" in faults:
        up = faults.get("triton_up")
        parts.append(f"Triton down at {faults['triton_down']:.0f} s, "
                     + (f"ready again at {up:.0f} s" if up is not None else "not back yet"))
    print("faults: " + "; ".join(parts))
    print("process starts: " + ", ".join(
        f"{name} {n}" + (f" ({exits[name]} exited on their own)" if exits[name] else "")
        for name, n in starts.items()))


def report(db_url: str, s3: Any, bucket: str, planned: Sequence[Plan],
           samples: Sequence[Sample], *, t0: float, wall: float, faults: dict[str, Any],
           starts: dict[str, int], exits: dict[str, int]) -> bool:
    """Print the figures; return whether the goal was met."""
    rows, twice = _ledger(db_url)
    keys = _outputs(s3, bucket)
    by_key = {r.idempotency_key: r for r in rows}
    succeeded = {r.id for r in rows if r.status == "succeeded"}
    never = Counter(r.status for r in rows if r.status in PENDING)
    missed: Counter[str] = Counter()
    for plan in planned:
        row = by_key.get(plan.idempotency_key)
        want = "succeeded" if plan.expect is None else f"dead {plan.expect}"
        got = ("not in the ledger" if row is None else
               f"dead {row.last_error_code}" if row.status == "dead" else row.status)
        if got != want:
            missed[f"{want} -> {got}"] += 1
    outputs = {_job_id(k) for k in keys}
    bad = Counter(p.expect for p in planned if p.expect is not None)
    _faults(faults, starts, exits)
    print(f"submitted: {len(planned)} ({len(planned) - bad.total()} good; bad: "
          f"{_counts(bad)}); in the ledger: {len(rows)}")
    print(f"succeeded: {len(succeeded)}")
    dead = Counter(r.last_error_code for r in rows if r.status == "dead")
    print(f"dead by reason: {_counts(dead)}")
    print(f"never terminal: {never.total()} ({_counts(never)})")
    attempts = [r.attempts for r in rows]
    if attempts:
        print(f"attempts per job: mean {statistics.fmean(attempts):.2f}, max {max(attempts)}")
    print(f"jobs with more than one succeeded (completed) event: {len(twice)}")
    print(f"output objects in S3: {len(keys)} for {len(succeeded)} successes "
          f"({len(outputs - succeeded)} without a success, {len(succeeded - outputs)} successes "
          "without one)")
    _broker(samples, t0)
    ended = "deadline passed" if faults.get("deadline_passed") else "every job terminal"
    print(f"wall: {wall:.1f} s from submit ({ended})")
    met = not missed and not never and not twice and outputs == succeeded \
        and len(keys) == len(succeeded) and len(rows) == len(planned)
    print("goal met: " + ("yes" if met else "no; jobs that did not end as they should: "
                          + _counts(missed)))
    return met
