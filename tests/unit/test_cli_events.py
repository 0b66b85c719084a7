"""``clipline events``' loop (``clipline.cli.events``) with an in-memory queue: a message that
cannot be parsed, however hostile, is counted, kept for the redrive policy or dropped at
``CLIPLINE_EVENTS_MAX_RECEIVES``, and never stops the loop."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from clipline.cli.events import Intake, run
from pipeline.adapters.events.sqs import Message
from pipeline.adapters.ledger.memory import MemoryLedger
from pipeline.adapters.queue.memory import MemoryQueue
from pipeline.errors import InvalidEvent
from pipeline.event_rules import EventRules
from pipeline.events import MAX_EVENT_BYTES, parse_notification
from pipeline.settings import Settings
from pipeline.tenants import Tenant

GOOD = json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {
    "bucket": {"name": "photos"}, "object": {"key": "a.png", "sequencer": "01"}}}]})
HOSTILE = {
    "deep": "[" * 50_000 + "]" * 50_000,  # 100 KB: the tracker's RecursionError
    "deep-in-an-event": '{"Records": [' + "[" * 50_000 + "]" * 50_000 + "]}",
    "deep-in-an-sns-envelope": json.dumps({"Type": "Notification",
                                           "Message": "[" * 50_000 + "]" * 50_000}),
    "too-large": json.dumps({"Records": [], "pad": "x" * MAX_EVENT_BYTES}),
    "not-json": "this is not an event",
}


@dataclass
class Queue:
    """An SQS queue without a redrive policy, in memory: each receive hands out every message
    not yet deleted, its receive count one higher."""

    messages: list[Message]
    deleted: list[str] = field(default_factory=list)

    def receive(self) -> list[Message]:
        self.messages = [replace(m, receive_count=m.receive_count + 1) for m in self.messages
                         if m.receipt not in self.deleted]
        return list(self.messages)

    def delete(self, receipts: list[str]) -> list[str]:
        self.deleted += receipts
        return []


def intake(tmp_path: Path, bodies: list[str], max_receives: int = 3) -> Intake:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nbucket = "photos"\ntenant = "acme"\n')
    source = Queue([Message(str(n), body, f"r{n}", 0) for n, body in enumerate(bodies)])
    return Intake(source, EventRules.load(rules, model="u2netp"),  # type: ignore[arg-type]
                  MemoryLedger(), MemoryQueue(), lambda t: Tenant(t, t, allow_any=True),
                  Settings(events_max_receives=max_receives), None)


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_message_is_unparseable_not_a_crash(case: str) -> None:
    with pytest.raises(InvalidEvent):
        parse_notification(HOSTILE[case])


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_message_is_counted_kept_then_dropped_while_the_good_one_is_recorded(
        tmp_path: Path, case: str) -> None:
    made = intake(tmp_path, [HOSTILE[case], GOOD])
    for _ in range(3):  # the loop survives every receive of it
        made.handle(made.source.receive())
    summary = made.summary()
    assert summary["unparseable"] == 3 and summary["dropped"] == 1, summary
    assert summary["jobs_created"] == 1
    assert made.source.deleted == ["r1", "r0"]  # type: ignore[attr-defined]  # the good one at once, the bad one at the 3rd
    assert [j.key for j in made.ledger.list_jobs()] == ["a.png"]


def test_the_loop_goes_on_past_hostile_messages_until_the_queue_is_empty(
        tmp_path: Path) -> None:
    made = intake(tmp_path, [*HOSTILE.values(), GOOD], max_receives=2)
    run(made, threading.Event(), once=True)  # returns: no exception, no endless redelivery
    assert made.summary()["dropped"] == len(HOSTILE)
    assert made.source.receive() == []
