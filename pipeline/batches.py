"""A batch's life, as the API runs it: every path ends in ``ready`` or ``failed``. Pure.

``POST /v1/batches`` records the batch in state ``expanding`` and answers at once; the expansion
(``pipeline.api.batches.expand``) then moves it on::

    expanding ──jobs recorded (one transaction)──► publishing ──messages sent──► ready
        │                                              │
        ├──refused: a bad line (named), a source       └──the API stopped while publishing,
        │  outside the allowlist, a manifest missing       settled by the reconciler ──► ready
        │  or too large, storage down ──► failed (reason, message)
        ├──an unforeseen exception ──► failed (internal_error; the API's log has it)
        └──the API stopped while expanding, settled by the reconciler (``settle_stale``):
              its jobs were recorded ──► ready       none were ──► failed (expansion_lost)

``ready`` and ``failed`` are final. A batch that publishing leaves with queued jobs whose
messages were not sent is not stuck either: the reconciler publishes queued jobs whose message
is missing. An inline batch (``items``) takes the same path before the answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pipeline import logs

EXPANDING, PUBLISHING, READY, FAILED = "expanding", "publishing", "ready", "failed"
STATES = (EXPANDING, PUBLISHING, READY, FAILED)
FINAL = frozenset({READY, FAILED})
EXPANSION_LOST = "expansion_lost"
log = logs.get(__name__)


@dataclass(frozen=True, slots=True)
class Unsettled:
    """A batch still ``expanding`` or ``publishing``: its id, meta and how many jobs it has."""

    id: uuid.UUID
    meta: Mapping[str, Any]
    jobs: int


class BatchLedger(Protocol):
    def unsettled_batches(self, created_before: datetime) -> list[Unsettled]: ...

    def settle_batch(self, batch_id: uuid.UUID, meta: Mapping[str, Any]) -> bool: ...


def settled(batch: Unsettled) -> dict[str, Any]:
    """The final meta of a batch whose API process stopped before it was done."""
    meta = {k: v for k, v in batch.meta.items() if k != "state"}
    if batch.jobs:
        return {**meta, "state": READY, "inserted": meta.get("inserted", batch.jobs),
                "note": "the API process stopped before the batch was done; its jobs were "
                "recorded, and the reconciler sends their messages"}
    return {**meta, "state": FAILED, "reason": EXPANSION_LOST,
            "message": "the API process stopped while reading the batch's source, and no job "
            "was recorded: submit the batch again"}


def settle_stale(ledger: BatchLedger, now: datetime, timeout_seconds: float) -> int:
    """Settle the batches left ``expanding`` or ``publishing`` longer than ``timeout_seconds``
    after they were created (their API process died or was restarted); returns how many.

    The measure is the batch's age, so ``timeout_seconds`` must exceed the longest expansion
    (a 1,000,000-line manifest takes minutes here; the default is a day). Settling is
    conditional: a batch the API finished meanwhile keeps the state the API wrote."""
    done = 0
    for batch in ledger.unsettled_batches(now - timedelta(seconds=timeout_seconds)):
        final = settled(batch)
        if ledger.settle_batch(batch.id, final):  # unless the API finished it meanwhile
            done += 1
            log.warning("batch_settled", batch_id=str(batch.id), was=batch.meta.get("state"),
                        state=final["state"], jobs=batch.jobs)
    return done
