"""The reconciler: what makes a lost Redis message cost time instead of a job.

Each pass, in bounded batches:

1. reap expired leases (a worker died or hung): the job goes back to ``queued`` after a backoff,
   or to ``dead`` with ``lease_expired`` once its attempts are spent;
2. publish a message for every queued, due job that has none on the way (a retry whose backoff
   was too long for a countdown, a reaped lease, a redrive);
3. re-publish messages the broker lost, judged by what the broker says, not by age while
   messages wait:
   - when the broker forgot everything (Redis restarted empty, a FLUSHALL: its marker key is
     gone, ``Queue.forgot``), every queued, due job gets a message again;
   - when nothing at all waits in the broker, jobs whose message went out more than
     ``lost_after_seconds`` ago and was never acted on get one (a send that failed after the
     job was stamped, say). While anything waits, old messages are only waiting: re-sending
     them would double the queue, which is what autoscaling reads.
   Invariant (tested): the broker never holds more messages than there are queued jobs, but
   for the messages of jobs that were claimed meanwhile (skipped by the worker), and those a
   SIGKILLed worker held, which Redis returns after the visibility timeout (docs/RELIABILITY.md).

Two reconcilers may run at once (a beat and a manual ``clipline reconcile``): the ledger hands
out disjoint rows (``SKIP LOCKED``), and a duplicate message is harmless anyway, because a worker
that cannot claim a job skips it. A job is stamped published before its message is sent; if the
send fails, step 3 sends it again later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pipeline import logs
from pipeline.jobs import Dispatch, ReapResult
from pipeline.ports import Queue

log = logs.get(__name__)


class ReconcilerLedger(Protocol):
    def reap(self, limit: int = 1000, *, every_lease: bool = False) -> ReapResult: ...

    def take_unpublished(
        self, limit: int, *, lost_after: float | None = None
    ) -> list[Dispatch]: ...


@dataclass(frozen=True)
class ReconcileConfig:
    batch_size: int = 1000
    max_batches: int = 100  # a pass publishes at most batch_size * max_batches messages
    lost_after_seconds: float = 300.0


@dataclass(frozen=True)
class ReconcileReport:
    requeued: int
    dead: int
    published: int
    backlog: int
    looked_for_lost: bool


def reconcile_once(
    ledger: ReconcilerLedger, queue: Queue, config: ReconcileConfig
) -> ReconcileReport:
    """One pass: reap, then publish what is missing; returns what it did."""
    reaped = ledger.reap(limit=config.batch_size)
    forgot = queue.forgot()
    backlog = queue.depth()
    lost_after = 0.0 if forgot else config.lost_after_seconds if backlog == 0 else None
    if forgot:
        log.warning("broker_forgot_messages", action="re-sending every queued job")
    published = 0
    for _ in range(config.max_batches):
        batch = ledger.take_unpublished(config.batch_size, lost_after=lost_after)
        if batch:
            queue.publish(batch)
            published += len(batch)
        if len(batch) < config.batch_size:
            break
    report = ReconcileReport(reaped.requeued, reaped.dead, published, backlog,
                             looked_for_lost=lost_after is not None)
    if published or reaped.requeued or reaped.dead:
        log.info("reconciled", **vars(report))
    return report


def reconcile_forever(
    ledger: ReconcilerLedger, queue: Queue, config: ReconcileConfig, *,
    interval: float, stop: threading.Event, also: Sequence[Callable[[], object]] = (),
    on_report: Callable[[ReconcileReport], object] = lambda report: None,
) -> None:
    """Pass every ``interval`` seconds until ``stop`` is set, running ``also`` (callback
    delivery) after each pass. A failed pass is logged, not fatal: the database or Redis may be
    restarting, and the next pass tries again."""
    while not stop.is_set():
        for step in (lambda: on_report(reconcile_once(ledger, queue, config)), *also):
            try:
                step()
            except Exception:
                log.exception("reconcile_failed")
        stop.wait(interval)
