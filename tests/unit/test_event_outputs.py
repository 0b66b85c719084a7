"""``clipline events`` rules with an output destination: parsed and checked at start, resolved
per event, held to the tenant's output allowlist, and never pointed where a rule watches."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.adapters.ledger.memory import MemoryLedger
from pipeline.adapters.queue.memory import MemoryQueue
from pipeline.errors import InvalidSettings
from pipeline.event_rules import EventRules
from pipeline.events import parse_notification, submit_events
from pipeline.tenants import Tenant

RULES = """
[[rule]]
bucket = "photos"
prefix = "nightly/"
tenant = "acme"
[rule.output]
bucket = "catalog"
key_template = "cutouts/{key_dir}/{key_stem}.{ext}"

[[rule]]
bucket = "photos"
prefix = "own/"
tenant = "acme"
[rule.output]
key_template = "{prefix}/{key_dir}/{key_stem}.{ext}"
"""
TENANTS = {
    "acme": Tenant("acme", "Acme", ("photos/",), allowed_outputs=("catalog/cutouts/",)),
    "closed": Tenant("closed", "Closed", ("photos/",)),
}


def records(*keys: str) -> list[Any]:
    body = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": "photos"},
        "object": {"key": k, "eTag": "abc", "sequencer": f"0{n}"}}} for n, k in enumerate(keys)]}
    return parse_notification(json.dumps(body))


def submit(rules: EventRules, *keys: str) -> Any:
    store = MemoryLedger()
    return submit_events(records(*keys), rules, store, MemoryQueue(), tenants=TENANTS.get,
                         output_bucket="clipline-out")


def test_a_rules_output_is_resolved_for_each_event() -> None:
    outcome = submit(EventRules.parse(RULES), "nightly/2026/SKU1.jpg", "own/a/b.jpg")
    assert [(j.output_bucket, j.output_key) for j in outcome.created] == [
        ("catalog", "cutouts/nightly/2026/SKU1.png"), (None, "cutouts/acme/own/a/b.png")]


def test_the_same_event_twice_is_one_job_with_one_key() -> None:
    rules, store, queue = EventRules.parse(RULES), MemoryLedger(), MemoryQueue()
    first = submit_events(records("nightly/x.jpg"), rules, store, queue, tenants=TENANTS.get)
    again = submit_events(records("nightly/x.jpg"), rules, store, queue, tenants=TENANTS.get)
    assert not again.created and again.existing[0].id == first.created[0].id


def test_an_output_outside_the_tenants_rules_skips_the_event() -> None:
    rules = EventRules.parse(RULES.replace('tenant = "acme"', 'tenant = "closed"', 1))
    outcome = submit(rules, "nightly/a.jpg")
    assert not outcome.created
    assert [(s.reason, s.tenant) for s in outcome.skipped] == [("output_not_allowed", "closed")]


def test_a_key_the_template_cannot_place_skips_the_event() -> None:
    outcome = submit(EventRules.parse(RULES), "nightly/a//b.jpg")
    assert [s.reason for s in outcome.skipped] == ["invalid_output"]


@pytest.mark.parametrize("output, words", [
    ('key_template = "{nope}"', "unknown placeholder"),
    ('key_template = "../{key}"', "'..'"),
    ('bucket = "Bad_Bucket"', "output bucket"),
    ('colour = "red"', "unknown field"),
    ("key_template = 3", "must be a string"),
])
def test_a_bad_output_stops_the_rules_at_start(output: str, words: str) -> None:
    text = f'[[rule]]\nbucket = "photos"\ntenant = "acme"\n[rule.output]\n{output}\n'
    with pytest.raises(InvalidSettings, match=words):
        EventRules.parse(text)


@pytest.mark.parametrize("template", ["{key}", "in/{key}", "i{key}", "{prefix}/{key}"])
def test_outputs_that_a_rule_would_pick_up_again_are_refused(template: str) -> None:
    text = ('[[rule]]\nbucket = "photos"\nprefix = "in"\ntenant = "acme"\n'
            f'[rule.output]\nbucket = "photos"\nkey_template = "{template}"\n')
    if template == "{prefix}/{key}":  # cutouts/acme/...: not under "in"
        assert EventRules.parse(text).rules[0].output is not None
        return
    with pytest.raises(InvalidSettings, match="cut out again"):
        EventRules.parse(text)


def test_an_output_beside_the_watched_prefix_is_allowed() -> None:
    text = ('[[rule]]\nbucket = "photos"\nprefix = "in/"\ntenant = "acme"\n'
            '[rule.output]\nbucket = "photos"\nkey_template = "out/{key}"\n')
    assert EventRules.parse(text).rules[0].output is not None
