"""Cursor paging over the ledger's jobs that never skips a job and never repeats one. Pure.

Job ids are made before their transaction commits, so ordering a listing by id lets a batch
that commits late land behind a cursor that has already passed its ids: those jobs are never
listed. Instead each job row records the number of the transaction that inserted it
(``txid``: PostgreSQL's transaction id; on SQLite, whose writers take turns, a counter taken
inside the write transaction), and a listing goes in ``(txid, id)`` order.

That alone is not enough on PostgreSQL: a transaction that is still open when a page is read
has a lower number than transactions that committed after it began, so its rows, once
committed, would sort behind the cursor. The page query therefore also reads the snapshot's
list of transactions in progress, and the cursor carries the ones it has passed (``pending``).
The next page first returns the rows of those that have committed since, in ``(txid, id)``
order (a large one is paged too: the cursor keeps the last id returned of it), then goes on
from the cursor's position. A rolled-back transaction simply drops out. No committed row can
then fall behind a cursor, and no row is returned twice, whatever the page size and however
long a writer stays open; nothing is held back either, so a writer that stays open does not
stall anyone's listing.

The guarantee: a listing paged to its end (``next_cursor`` null) has returned every job that
was committed before its last page was read, each exactly once, given filters that the job
matched all along (a status filter follows jobs as their status changes).

The cursor is opaque to clients: URL-safe text of about a hundred characters, plus about ten
per transaction that was open when the page was read.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pipeline.errors import InvalidCursor
from pipeline.jobs import Job

NIL = uuid.UUID(int=0)
MAX_CURSOR_CHARS = 8192
VERSION = 1

Position = tuple[int, uuid.UUID]  # (txid, id): where a row sorts in every listing
Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a listing stands: every row at or before ``position`` has been returned, except
    the rows of the ``pending`` transactions (open when a page passed them, or committed but
    not returned yet) after the last id returned of each (None: none was)."""

    position: Position = (0, NIL)
    pending: tuple[tuple[int, uuid.UUID | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; ``next_cursor`` is None once the listing has reached its end."""

    items: list[Job]
    next_cursor: str | None


def read(
    cursor: Cursor,
    limit: int,
    running: Collection[int],
    lane: Callable[[int, uuid.UUID | None, int], Sequence[Row]],
    beyond: Callable[[Position, int], Sequence[Row]],
    position: Callable[[Row], Position],
) -> tuple[list[Row], Cursor | None]:
    """One page of at most ``limit`` rows, read in one snapshot, in which the ``running``
    transactions were in progress: ``lane(txid, after_id, n)`` gives the first ``n`` rows of
    one transaction after ``after_id`` (all of them for None), ``beyond(position, n)`` the
    first ``n`` rows after ``position``, both in ``(txid, id)`` order. Returns the rows and the
    cursor of the next page, None at the end of the listing."""
    rows: list[Row] = []
    for txid, last in cursor.pending:
        if txid not in running and len(rows) < limit:
            rows += lane(txid, last, limit - len(rows))
    if len(rows) < limit:
        rows += beyond(cursor.position, limit - len(rows))
    full = len(rows) >= limit
    after = advance(cursor, [position(r) for r in rows], full, running)
    return rows, after if full else None


def advance(cursor: Cursor, returned: Sequence[Position], full: bool,
            running: Collection[int]) -> Cursor:
    """The cursor after a page that returned the rows at ``returned`` (in order), ``full`` when
    it stopped at its limit, read in a snapshot in which the ``running`` transactions were
    still open."""
    last = returned[-1] if returned else None
    position = last if last is not None and last > cursor.position else cursor.position
    progress = dict(cursor.pending)
    for txid in running:
        if txid < position[0]:
            progress.setdefault(txid, None)  # passed while open: its rows come later
    for txid, job_id in returned:
        if txid in progress:
            progress[txid] = job_id
    pending = [
        (txid, job_id) for txid, job_id in sorted(progress.items())
        # a finished transaction is done once the page went past it (or was not full)
        if txid in running or (full and last is not None and last[0] <= txid)
    ]
    return Cursor(position, tuple(pending))


def encode(cursor: Cursor | None) -> str | None:
    """The cursor as opaque, URL-safe text (None stays None: the end of a listing)."""
    if cursor is None:
        return None
    doc: dict[str, object] = {"v": VERSION, "t": cursor.position[0],
                              "i": cursor.position[1].hex}
    if cursor.pending:
        doc["p"] = [[txid, None if job_id is None else job_id.hex]
                    for txid, job_id in cursor.pending]
    text = json.dumps(doc, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def decode(text: str | None) -> Cursor:
    """The cursor ``encode`` made; ``InvalidCursor`` for anything else. None: the start."""
    if text is None:
        return Cursor()
    try:
        if len(text) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        doc = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(doc, dict) or doc.get("v") != VERSION:
            raise ValueError("not a cursor")
        position = (_txid(doc["t"]), uuid.UUID(hex=doc["i"]))
        pending = tuple(sorted({_txid(txid): None if job_id is None else uuid.UUID(hex=job_id)
                                for txid, job_id in doc.get("p", [])}.items()))
        if any(txid >= position[0] for txid, _ in pending):
            raise ValueError("a pending transaction at or after the position")
        return Cursor(position, pending)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError,
            binascii.Error) as exc:
        raise InvalidCursor("the cursor is not one this API returned: pass `next_cursor` "
                            "of the previous page as it came") from exc


def _txid(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise ValueError("not a transaction number")
    return value
