"""A batch's own callback: one signed POST once its report is written (``pipeline.batch_report``).

A batch submitted with ``report_callback_url`` is announced when it has finished and its
results manifest is in the output bucket, and again each time a redrive finishes it and the
report is rewritten. The body says what the report says (``payload``); it is signed exactly as
a job's completion callback (``pipeline.callbacks``: header ``Clipline-Signature``, the
tenant's secret), and delivery is the same: at least once, retried with backoff up to
``max_attempts``, an address inside the network refused at once. The receiver tells it from a
job's callback by ``"type": "batch.reported"``; the batch id with ``report.written_at`` is its
idempotency key. Pure apart from the ports it is given.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pipeline import logs
from pipeline.callbacks import DeliveryReport, Due, Sender, deliver
from pipeline.ports import Clock
from pipeline.retry import Backoff

EVENT = "batch.reported"
log = logs.get(__name__)


class BatchCallbackLedger(Protocol):
    clock: Clock

    def due_batch_callbacks(self, limit: int, *,
                            hold_seconds: float = 60.0) -> list[dict[str, Any]]: ...

    def batch_callback_result(self, batch_id: Any, *, error: str | None,
                              retry_at: Any = None) -> None: ...


def payload(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The body for a batch row: its id, tenant, label and report (where both files are, how
    many jobs by status, when it was written)."""
    report = dict((batch.get("meta") or {}).get("report") or {})
    files = {kind: {"bucket": report.get("bucket"), "key": report.get(kind)}
             for kind in ("jsonl", "csv")}
    return {
        "type": EVENT, "batch_id": str(batch["id"]), "tenant": batch["tenant_id"],
        "label": batch.get("label"),
        "report": {**files, "jobs": report.get("jobs"), "counts": report.get("counts"),
                   "written_at": report.get("written_at")},
    }


def deliver_due_batches(
    ledger: BatchCallbackLedger, sender: Sender, secret_of: Callable[[str], str | None], *,
    backoff: Backoff, max_attempts: int = 8, limit: int = 100,
    rng: random.Random | None = None,
) -> DeliveryReport:
    """Send every due batch callback once; record each outcome (``callbacks.deliver``)."""
    dues = (Due(("batch_id", batch["id"]), batch["tenant_id"], batch["callback_url"],
                payload(batch), batch["callback_attempts"])
            for batch in ledger.due_batch_callbacks(limit))
    return deliver(dues, lambda batch_id, error, retry_at: ledger.batch_callback_result(
        batch_id, error=error, retry_at=retry_at), sender, secret_of, clock=ledger.clock,
        backoff=backoff, max_attempts=max_attempts, rng=rng or random.Random(),
        log_as="batch_callback")
