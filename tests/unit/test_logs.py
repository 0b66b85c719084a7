"""Logs: JSON lines for services, with the bound job context on every event."""

from __future__ import annotations

import json

import pytest
import structlog

from pipeline import logs


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    # configure() binds the stream it was given (here pytest's captured stderr, closed after the
    # test); later tests must not write to it.
    yield
    structlog.reset_defaults()


def test_json_logs_carry_bound_context(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "INFO")
    try:
        logs.bind(job_id="j-1", batch_id="b-9", tenant="acme")
        logs.get("test").info("job_claimed", attempt=2)
        logs.get("test").debug("too_fine_to_show")
    finally:
        logs.clear()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 1
    event = lines[0]
    assert event["event"] == "job_claimed"
    assert (event["job_id"], event["batch_id"], event["tenant"], event["attempt"]) == (
        "j-1", "b-9", "acme", 2)
    assert event["level"] == "info"
    assert "timestamp" in event


def test_console_logs_are_readable(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("console", "INFO")
    logs.get("test").warning("job_dead_lettered", reason="not_an_image")
    err = capsys.readouterr().err
    assert "job_dead_lettered" in err
    assert "reason=not_an_image" in err
    assert not err.lstrip().startswith("{")
