"""Paging while a long manifest is being inserted, on PostgreSQL: several transactions, some held
open while others commit, and a reader paging through the jobs all along. Every committed job
comes exactly once, including those of a transaction that committed long after the reader had
passed the ids it took (the tracker's "paging skips more than half the jobs")."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.adapters.ledger.database import make_engine
from pipeline.adapters.ledger.schema import jobs
from pipeline.adapters.ledger.sql import SqlLedger
from pipeline.jobs import JobSpec
from tests.conftest import _ledger_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
LINES = 5_000  # per transaction; six of them, plus single submits
PAGE = 500


@pytest.fixture
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlLedger]:
    made = SqlLedger(make_engine(_ledger_url(request, "postgres", tmp_path), pool_size=10))
    yield made
    made.close()


class Progress:
    """How many jobs the writers have committed (known to be committed: counted after each
    commit returned), and how many the reader has seen."""

    def __init__(self) -> None:
        self.committed = self.seen = 0
        self.cond = threading.Condition()
        self.holds: list[threading.Event] = []
        self.writers: list[threading.Thread] = []
        self.stopped = False

    def add(self, n: int) -> None:
        with self.cond:
            self.committed += n
            self.cond.notify_all()

    def wait_until(self, test: Callable[[], bool]) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.stopped or test(), timeout=60), (
                "the test's threads stalled")
            if self.stopped:
                raise RuntimeError("the reader has stopped")

    def stop(self) -> None:
        """Let the writers run to their end: the reader has stopped (it failed)."""
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        for hold in self.holds:
            hold.set()


def lines(name: str, n: int, hold: threading.Event | None = None,
          opened: threading.Event | None = None) -> Iterator[JobSpec]:
    """A manifest of ``n`` lines; with ``hold``, its transaction stays open halfway until set."""
    for i in range(n):
        if i == n // 2 and hold is not None:
            assert opened is not None
            opened.set()
            assert hold.wait(60)
        yield JobSpec("photos", f"{name}/{i:06d}.jpg")


def write(ledger: SqlLedger, progress: Progress) -> None:
    """The writers' script: transactions that commit while older ones are still open."""

    def held(name: str) -> tuple[threading.Thread, threading.Event]:
        hold, opened = threading.Event(), threading.Event()
        progress.holds.append(hold)

        def run() -> None:
            progress.add(ledger.submit_many(lines(name, LINES, hold, opened)).inserted)

        thread = threading.Thread(target=run, name=f"writer-{name}", daemon=True)
        progress.writers.append(thread)
        thread.start()
        assert opened.wait(60)
        return thread, hold

    def caught_up() -> None:  # the reader has passed all but the last page committed
        progress.wait_until(lambda: progress.committed - progress.seen < PAGE)

    first, release_first = held("a")  # open, with half its ids taken
    progress.add(ledger.submit_many(lines("b", LINES)).inserted)
    caught_up()
    second, release_second = held("c")
    progress.add(ledger.submit_many(lines("d", LINES)).inserted)
    for i in range(20):
        progress.add(int(ledger.submit(JobSpec("photos", f"single/{i}.jpg")).created))
    caught_up()
    release_first.set()  # "a" commits now, behind a reader that passed "b" and "d"
    first.join()
    progress.add(ledger.submit_many(lines("e", LINES)).inserted)
    release_second.set()
    second.join()
    progress.add(ledger.submit_many(lines("f", LINES)).inserted)


def test_a_reader_paging_during_a_long_insert_gets_every_job_exactly_once(
    ledger: SqlLedger,
) -> None:
    progress = Progress()
    failed: list[BaseException] = []

    def writer() -> None:
        try:
            write(ledger, progress)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failed.append(exc)
            progress.add(10**9)

    thread = threading.Thread(target=writer, name="writers", daemon=True)
    thread.start()
    try:
        listed = read_along(ledger, progress, thread)
    finally:
        progress.stop()
        for each in [thread, *progress.writers]:
            each.join(60)
    assert not failed, failed
    total = 6 * LINES + 20
    with ledger.engine.connect() as conn:
        stored = set(conn.execute(select(jobs.c.id)).scalars())
    assert len(stored) == progress.committed == total
    assert len(listed) == len(set(listed)), "a job came twice"
    assert set(listed) == stored, f"{len(stored - set(listed))} committed jobs never came"



def read_along(ledger: SqlLedger, progress: Progress, writers: threading.Thread
               ) -> list[uuid.UUID]:
    """Page through the jobs while the writers work, then to the end of the listing."""
    listed: list[uuid.UUID] = []
    cursor: str | None = None
    started = time.monotonic()
    while writers.is_alive() or cursor is not None or not listed:
        with progress.cond:
            backlog = progress.committed - progress.seen
        if writers.is_alive() and backlog < PAGE:
            # Read only what is known to be committed, so the listing never reaches its end
            # (a page that is not full) while the writers are still at work.
            time.sleep(0.005)
            continue
        page = ledger.page_jobs(after=cursor, limit=PAGE)
        listed += [j.id for j in page.items]
        cursor = page.next_cursor
        with progress.cond:
            progress.seen = len(listed)
            progress.cond.notify_all()
        assert cursor is not None or not writers.is_alive(), (
            f"the listing ended after {len(listed)} jobs while {progress.committed} were "
            "committed: jobs behind its cursor were skipped")
        assert time.monotonic() - started < 300
    return listed
