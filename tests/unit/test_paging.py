"""Cursor paging, the pure part: the cursor's text form, and the page algorithm run against a
model of a database with concurrent writers (snapshots, transactions open for a long time,
commits and rollbacks in any order)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

import pytest

from pipeline import paging
from pipeline.errors import InvalidCursor
from pipeline.paging import Cursor, Position

A, B = uuid.UUID(int=10), uuid.UUID(int=20)


def test_a_cursor_survives_its_text_form() -> None:
    for cursor in (Cursor(), Cursor((7, A)), Cursor((9, B), ((3, None), (4, A), (5, None)))):
        text = paging.encode(cursor)
        assert text is not None and text.replace("-", "").replace("_", "").isalnum()
        assert paging.decode(text) == cursor
    assert paging.decode(None) == Cursor()
    assert paging.encode(None) is None


@pytest.mark.parametrize("text", [
    "", "garbage!", "bm90IGpzb24", str(A),  # not base64 JSON; an old-style job id
    paging.encode(Cursor((1, A)))[:-3],  # type: ignore[index]
    "eyJ2IjoyLCJ0IjoxLCJpIjoiMDAifQ",  # {"v":2,...}: another version
    "eyJ2IjoxLCJ0IjotMSwiaSI6IjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDBhIn0",  # t = -1
    "eyJ2IjoxLCJ0IjoxLCJpIjo1fQ",  # "i": 5
    "A" * (paging.MAX_CURSOR_CHARS + 1),
    paging.encode(Cursor((5, A), ((5, None),))),  # pending must lie behind the position
])
def test_a_cursor_the_ledger_did_not_make_is_refused(text: str) -> None:
    with pytest.raises(InvalidCursor):
        paging.decode(text)


def test_advance_remembers_the_writers_it_passed_and_how_far_it_read_them() -> None:
    start = Cursor((5, A))
    # A full page up to txid 9 while 7 and 8 were still open (12 is beyond: not passed).
    after = paging.advance(start, [(6, A), (9, A)], True, {7, 8, 12})
    assert after == Cursor((9, A), ((7, None), (8, None)))
    # Both finished; the page ended inside 7's rows: 8 (committed or rolled back) stays.
    later = paging.advance(after, [(7, A), (7, B)], True, set())
    assert later == Cursor((9, A), ((7, B), (8, None)))
    # A page that is not full has returned everything that was committed.
    assert paging.advance(later, [(7, uuid.UUID(int=30))], False, set()) == Cursor((9, A))


def test_a_writer_that_commits_after_a_later_one_was_half_read_is_read_first() -> None:
    half = Cursor((9, A), ((4, None), (6, B)))  # 4 still open, 6 half read
    assert paging.advance(half, [(4, A)], True, set()) == Cursor((9, A), ((4, A), (6, B)))


# -- a model of a database with concurrent writers --------------------------------------------


@dataclass
class Table:
    """Rows carry their transaction's number; a snapshot sees committed transactions only."""

    next_txid: int = 3
    rows: list[tuple[int, uuid.UUID]] = field(default_factory=list)
    open: set[int] = field(default_factory=set)
    aborted: set[int] = field(default_factory=set)

    def begin(self) -> int:
        self.next_txid += 1
        self.open.add(self.next_txid)
        return self.next_txid

    def insert(self, txid: int, rng: random.Random, n: int) -> None:
        # ids taken before commit, in no useful order with other transactions' ids
        self.rows += [(txid, uuid.UUID(int=rng.getrandbits(128))) for _ in range(n)]

    def committed(self) -> set[Position]:
        return {r for r in self.rows if r[0] not in self.open and r[0] not in self.aborted}

    def page(self, after: str | None, limit: int, lanes: bool = True
             ) -> tuple[list[Position], str | None]:
        visible = sorted(self.committed())

        def lane(txid: int, last: uuid.UUID | None, n: int) -> list[Position]:
            return [r for r in visible if r[0] == txid and (last is None or r[1] > last)][:n]

        def beyond(position: Position, n: int) -> list[Position]:
            return [r for r in visible if r > position][:n]

        running = frozenset(self.open) if lanes else frozenset()
        rows, cursor = paging.read(paging.decode(after), limit, running, lane, beyond,
                                   lambda r: r)
        return rows, paging.encode(cursor)


def follow(table: Table, rng: random.Random, lanes: bool = True) -> tuple[list[Position],
                                                                          set[Position]]:
    """Writers open, insert, commit and roll back at random while a reader pages through;
    returns what the reader got, and what was committed before its last page."""
    got: list[Position] = []
    cursor: str | None = None
    writers: list[int] = []
    for _ in range(400):
        move = rng.random()
        if move < 0.25 or not writers:
            writers.append(table.begin())
        elif move < 0.6:
            table.insert(rng.choice(writers), rng, rng.randint(1, 40))
        elif move < 0.8:
            txid = writers.pop(rng.randrange(len(writers)))
            table.open.discard(txid)
            if rng.random() < 0.1:
                table.aborted.add(txid)
        else:
            rows, cursor = table.page(cursor, rng.choice([1, 3, 10, 50]), lanes)
            got += rows
            if cursor is None:  # the end for now: a new listing starts over
                got.clear()
    for txid in writers:  # the writers finish; the reader goes on to the end
        table.open.discard(txid)
    while True:
        rows, cursor = table.page(cursor, 50, lanes)
        got += rows
        if cursor is None:
            return got, table.committed()


@pytest.mark.parametrize("seed", range(30))
def test_a_listing_returns_every_committed_row_exactly_once(seed: int) -> None:
    got, committed = follow(Table(), random.Random(seed))
    assert len(got) == len(set(got))
    assert set(got) == committed


def test_without_the_writers_it_passed_a_cursor_skips_rows() -> None:
    """The model has teeth: paging by position alone loses late commits."""
    lost = 0
    for seed in range(5):
        got, committed = follow(Table(), random.Random(seed), lanes=False)
        lost += len(committed - set(got))
    assert lost > 0
