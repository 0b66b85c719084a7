"""The tasks: thin. Each turns a message into a call on the core and returns a word for the log.

Everything a task needs is built once per worker process (``workers.runtime``), after the fork.
"""

from __future__ import annotations

import uuid
from typing import Any

from pipeline import logs
from pipeline.batches import settle_stale
from pipeline.reconcile import reconcile_once
from workers import runtime
from workers.app import PROCESS, RECONCILE, app, settings

log = logs.get(__name__)


@app.task(name=PROCESS, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def process(job_id: str, priority: int = 0) -> str:
    """Run one job to an outcome; ``priority`` routed the message (and routes it again if the
    job is deferred while a dependency is down)."""
    try:
        parsed = uuid.UUID(job_id)
    except (ValueError, TypeError):
        log.error("bad_message", job_id=repr(job_id)[:100])
        return "rejected"
    return runtime.runner().run(parsed, priority).value


@app.task(name=RECONCILE, ignore_result=True)
def reconcile() -> dict[str, Any]:
    """One reconciler pass, for Celery beat."""
    ledger = runtime.ledger()
    report = reconcile_once(ledger, runtime.queue(), runtime.reconcile_config())
    settled = settle_stale(ledger, ledger.clock.now(), settings.batch_settle_after_seconds)
    return {**vars(report), "batches_settled": settled}
