"""What ``pipeline.fields`` accepts, PostgreSQL stores and gives back unchanged, as text and inside
JSON: the property behind "nothing the database would refuse reaches it". Hypothesis draws any
code point (surrogates and controls included), derandomized so CI is deterministic."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, create_engine, text

from pipeline import fields
from pipeline.errors import InvalidField

pytestmark = [pytest.mark.postgres]


@pytest.fixture(scope="module")
def pg(pg_database: str) -> Iterator[Connection]:
    engine = create_engine(pg_database)
    with engine.connect() as conn:
        conn.execute(text("CREATE TEMP TABLE probe (plain text, doc jsonb)"))
        conn.commit()  # the table stays for the session; each example rolls its row back
        yield conn
    engine.dispose()


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(value=st.text(st.characters(codec=None, categories=None), max_size=40))
def test_what_a_key_check_accepts_postgres_stores_unchanged(pg: Connection, value: str) -> None:
    try:
        fields.KEY.check(value)
    except InvalidField:
        return
    row = pg.execute(text("INSERT INTO probe VALUES (:plain, cast(:doc AS jsonb)) "
                          "RETURNING plain, doc"),
                     {"plain": value, "doc": json.dumps({"key": value})}).one()
    assert row.plain == value and row.doc == {"key": value}
    pg.rollback()
