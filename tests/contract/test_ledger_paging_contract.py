"""Paging through jobs, one contract for every ledger: a listing paged to its end returns every
job committed before its last page, exactly once, in the order the jobs were committed, even
when a later transaction's ids sort before an earlier one's (ids are taken before commit).

The open-transaction case (a writer still in progress while pages pass it) is PostgreSQL's
alone: tests/integration/test_paging_concurrency.py."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.adapters.ledger import bulk_insert
from pipeline.adapters.ledger import memory as memory_ledger
from pipeline.adapters.ledger import sql as ledger_sql
from pipeline.errors import InvalidCursor, NotAnImage
from pipeline.intake import queued_pages
from pipeline.jobs import JobSpec, JobStatus
from pipeline.paging import Page

Ledger = Any  # SqlLedger | MemoryLedger


def spec(key: str, **kw: Any) -> JobSpec:
    return JobSpec(bucket="photos", key=key, **kw)


@pytest.fixture
def ids_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Make the ledgers' new ids carry a chosen millisecond stamp, as ids taken by a client
    that is slow to commit would."""

    def use(stamp_ms: int) -> None:
        def text() -> str:
            rand = os.urandom(10).hex()
            s = f"{stamp_ms:012x}"
            return f"{s[:8]}-{s[8:]}-7{rand[:3]}-8{rand[4:7]}-{rand[7:19]}"

        def make() -> uuid.UUID:
            return uuid.UUID(text())

        monkeypatch.setattr(ledger_sql, "new_id", make)
        monkeypatch.setattr(memory_ledger, "new_id", make)
        monkeypatch.setattr(bulk_insert, "new_id_text", text)

    return use


def pages(ledger: Ledger, after: str | None = None, limit: int = 3,
          **filters: Any) -> tuple[list[uuid.UUID], list[Page]]:
    """Page to the end from ``after``; the ids in the order they came, and the pages."""
    got: list[Page] = []
    while True:
        page = ledger.page_jobs(after=after, limit=limit, **filters)
        got.append(page)
        if page.next_cursor is None:
            return [j.id for p in got for j in p.items], got
        after = page.next_cursor


def test_a_later_commit_with_older_ids_is_listed_not_skipped(
    ledger: Ledger, ids_at: Callable[[int], None]
) -> None:
    ids_at(2_000_000_000_000)  # the first transaction's ids sort high
    first = ledger.submit_many([spec(f"a{i}.jpg") for i in range(10)])
    early = ledger.page_jobs(limit=4)
    assert len(early.items) == 4 and early.next_cursor is not None
    ids_at(1_000_000_000_000)  # a later transaction whose ids sort before all of those
    ledger.submit_many([spec(f"b{i}.jpg") for i in range(5)])
    single = ledger.submit(spec("c.jpg")).job
    rest, _ = pages(ledger, early.next_cursor)
    listed = [j.id for j in early.items] + rest
    assert first.inserted == 10
    assert len(listed) == len(set(listed)) == 16
    keys = [ledger.get(i).key for i in listed]
    # In commit order: every job of a transaction after every job of the ones before it.
    assert {k[0] for k in keys[:10]} == {"a"} and {k[0] for k in keys[10:15]} == {"b"}
    assert listed[-1] == single.id


def test_a_listing_ends_with_a_null_cursor_and_a_full_last_page_gives_one_more(
    ledger: Ledger,
) -> None:
    ledger.submit_many([spec(f"{i}.jpg") for i in range(4)])
    listed, got = pages(ledger, limit=2)
    assert len(listed) == 4
    assert [len(p.items) for p in got] == [2, 2, 0]
    assert [p.next_cursor is None for p in got] == [False, False, True]
    assert ledger.page_jobs(limit=5).next_cursor is None


def test_an_empty_listing_is_one_empty_page(ledger: Ledger) -> None:
    page = ledger.page_jobs(tenant="nobody")
    assert (page.items, page.next_cursor) == ([], None)


def test_paging_keeps_the_filters(ledger: Ledger) -> None:
    ledger.ensure_tenant("acme")
    batch = ledger.create_batch()
    mine = ledger.submit_many([spec(f"{i}.jpg") for i in range(7)], batch_id=batch)
    ledger.submit_many([spec(f"{i}.jpg") for i in range(7)], tenant="acme")
    ledger.submit(spec("loose.jpg"))
    for key in ("x.jpg", "y.jpg"):
        job = ledger.submit(spec(key), batch_id=batch).job
        claim = ledger.claim(job.id, worker="w")
        ledger.fail(job.id, claim.token, NotAnImage())
    in_batch, _ = pages(ledger, batch_id=batch, limit=2)
    assert mine.inserted == 7 and len(in_batch) == len(set(in_batch)) == 9
    queued, _ = pages(ledger, batch_id=batch, status=JobStatus.QUEUED, limit=2)
    assert len(queued) == 7
    dead, _ = pages(ledger, tenant="default", status=JobStatus.DEAD, reason="not_an_image",
                    limit=1)
    assert [ledger.get(i).key for i in dead] == ["x.jpg", "y.jpg"]
    theirs, _ = pages(ledger, tenant="acme", limit=4)
    assert len(theirs) == 7
    everything, _ = pages(ledger, limit=5)
    assert len(everything) == len(set(everything)) == 17


def test_list_jobs_is_the_first_page(ledger: Ledger) -> None:
    ledger.submit_many([spec(f"{i}.jpg") for i in range(5)])
    assert ledger.list_jobs(limit=3) == ledger.page_jobs(limit=3).items


@pytest.mark.parametrize("cursor", ["not-a-cursor", str(uuid.uuid4()), "eyJ2IjoxfQ"])
def test_a_cursor_the_ledger_did_not_make_is_refused(ledger: Ledger, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        ledger.page_jobs(after=cursor)


def test_source_index_follows_the_commit_order(
    ledger: Ledger, ids_at: Callable[[int], None]
) -> None:
    batch = ledger.create_batch()
    ids_at(2_000_000_000_000)
    ledger.submit(spec("first.jpg"), batch_id=batch)
    ids_at(1_000_000_000_000)
    ledger.submit(spec("second.jpg"), batch_id=batch)
    assert [key for _, key, _, _ in ledger.source_index(batch)] == ["first.jpg", "second.jpg"]


@pytest.mark.parametrize("lines", [0, 5, 6, 7])
def test_queued_pages_hands_out_every_queued_job_of_the_batch_once(
    ledger: Ledger, lines: int
) -> None:
    batch = ledger.create_batch()
    ledger.submit_many([spec(f"{i}.jpg") for i in range(lines)], batch_id=batch)
    ledger.submit(spec("elsewhere.jpg"))
    got = list(queued_pages(ledger, batch, page=3))
    assert all(0 < len(page) <= 3 for page in got)
    assert sorted(j.key for page in got for j in page) == sorted(f"{i}.jpg" for i in range(lines))
