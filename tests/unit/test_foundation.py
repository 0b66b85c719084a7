"""Pure pieces under the ledger: status machine, ids, idempotency keys, backoff, settings."""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline import errors
from pipeline.jobs import (
    TERMINAL,
    TRANSITIONS,
    JobSpec,
    JobStatus,
    allowed,
    canonical_json,
    new_id,
    new_id_text,
)
from pipeline.retry import Backoff
from pipeline.settings import Settings


def test_terminal_states_have_no_way_out_but_dead_redrive() -> None:
    assert all(not TRANSITIONS[s] for s in TERMINAL - {JobStatus.DEAD})
    assert TRANSITIONS[JobStatus.DEAD] == {JobStatus.QUEUED}
    assert allowed(JobStatus.QUEUED, JobStatus.RUNNING)
    assert not allowed(JobStatus.QUEUED, JobStatus.SUCCEEDED)
    assert not allowed(JobStatus.SUCCEEDED, JobStatus.QUEUED)


def test_new_ids_are_version_7_and_time_ordered() -> None:
    ids = [new_id() for _ in range(2000)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == 2000
    stamps = [i.int >> 80 for i in ids]
    assert stamps == sorted(stamps)


def test_dedupe_key_ignores_option_order_and_sees_every_field() -> None:
    a = JobSpec("b", "k", options={"x": 1, "y": [1, 2]})
    assert a.dedupe_key() == JobSpec("b", "k", options={"y": [1, 2], "x": 1}).dedupe_key()
    variants = [
        JobSpec("b2", "k", options=a.options), JobSpec("b", "k2", options=a.options),
        JobSpec("b", "k", "v1", a.options), JobSpec("b", "k", options={"x": 2, "y": [1, 2]}),
        JobSpec("b", "k", options=a.options, model="isnet"),
    ]
    assert len({v.dedupe_key() for v in variants} | {a.dedupe_key()}) == 6
    assert JobSpec("b", "k", idempotency_key="mine").dedupe_key() == "mine"


def test_backoff_doubles_with_jitter_and_caps() -> None:
    rng = random.Random(7)
    b = Backoff(base=2.0, cap=30.0)
    for attempt, top in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (12, 30.0)]:
        delays = [b.delay(attempt, rng) for _ in range(200)]
        assert min(delays) >= top / 2
        assert max(delays) <= top
        assert max(delays) - min(delays) > top / 10  # jittered, not constant


def test_settings_defaults_run_embedded(tmp_path: object) -> None:
    s = Settings()
    assert s.ledger_url.startswith("sqlite:///")
    assert s.ledger_url.endswith("clipline-data/ledger.sqlite3")
    assert s.segmenter == "onnx"
    assert s.model_folder.as_posix().endswith("clipline-data/models")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPLINE_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("CLIPLINE_MAX_ATTEMPTS", "9")
    s = Settings()
    assert (s.ledger_url, s.max_attempts) == ("postgresql+psycopg://u@h/db", 9)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("CLIPLINE_MAX_ATTEMPTS", "0"),
        ("CLIPLINE_SEGMENTER", "gpu"),
        ("CLIPLINE_LEASE_SECONDS", "x"),
    ],
)
def test_bad_settings_fail_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert info.value.errors()[0]["loc"] == (var.removeprefix("CLIPLINE_").lower(),)


def test_every_error_leaf_has_its_own_reason_and_kind() -> None:
    leaves = [*errors.TransientError.__subclasses__(), *errors.PermanentError.__subclasses__()]
    reasons = [cls.reason for cls in leaves]
    assert len(reasons) == len(set(reasons))
    assert all(cls.transient for cls in errors.TransientError.__subclasses__())
    assert not any(cls.transient for cls in errors.PermanentError.__subclasses__())
    assert errors.NotAnImage().message == "the data is not an image"
    assert errors.NotAnImage("custom").message == "custom"


@given(
    bucket=st.text(), key=st.text(), version=st.none() | st.text(),
    options=st.dictionaries(st.text(), st.integers() | st.text() | st.booleans() | st.none()),
    model=st.text(),
)
def test_fast_identity_equals_canonical_json(
    bucket: str, key: str, version: str | None, options: dict[str, object], model: str
) -> None:
    spec = JobSpec(bucket, key, version, options, model)
    assert spec.identity() == canonical_json([bucket, key, version, options, model])


def test_new_id_text_is_a_valid_uuid7() -> None:
    for _ in range(500):
        value = uuid.UUID(new_id_text())
        assert (value.version, value.variant) == (7, uuid.RFC_4122)
