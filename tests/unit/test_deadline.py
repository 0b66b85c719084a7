"""A job's deadline, given instead of a priority, becomes one."""

from __future__ import annotations


def test_deadlines_map_to_priorities() -> None:
    from datetime import UTC, datetime, timedelta

    from pipeline.api.schemas import priority_for_deadline

    now = datetime(2026, 11, 22, tzinfo=UTC)
    steps = [(5, 10), (15, 10), (16, 7), (60, 7), (300, 5), (1000, 2), (1441, 0)]
    for minutes, expected in steps:
        assert priority_for_deadline(now + timedelta(minutes=minutes), now) == expected
