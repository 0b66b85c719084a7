"""S3 event intake, the pure part: notification shapes, rules, idempotency, the guards."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.ledger.memory import MemoryLedger
from pipeline.adapters.queue.memory import MemoryQueue
from pipeline.errors import BrokerUnavailable, InvalidEvent, InvalidSettings
from pipeline.event_rules import EventRules
from pipeline.events import (
    ObjectCreated,
    job_specs,
    parse_notification,
    route,
    submit_events,
)
from pipeline.jobs import Dispatch, JobStatus
from pipeline.options import OutputOptions
from pipeline.tenants import Tenant

RULES = """
[[rule]]
bucket = "photos"
tenant = "acme"

[[rule]]
bucket = "photos"
prefix = "incoming/"
tenant = "acme"
priority = 7
[rule.options]
format = "webp"
crop = true

[[rule]]
bucket = "photos"
prefix = "incoming/vip/"
tenant = "vip"
model = "isnet"
"""


def aws_record(key: str = "HappyFace.jpg", *, bucket: str = "photos",
               event: str = "ObjectCreated:Put", version: str | None = None,
               sequencer: str | None = "0055AED6DCD90281E5", etag: str = "d41d8cd98f00b2",
               ) -> dict[str, Any]:
    """A record as AWS documents it (notification-content-structure)."""
    obj: dict[str, Any] = {"key": key, "size": 1024, "eTag": etag}
    if version is not None:
        obj["versionId"] = version
    if sequencer is not None:
        obj["sequencer"] = sequencer
    return {
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2024-05-01T00:00:00.000Z", "eventName": event,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "clipline",
               "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": obj},
    }


def notification(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


@pytest.fixture
def rules() -> EventRules:
    return EventRules.parse(RULES)


# -- parsing ----------------------------------------------------------------------------------


def test_an_aws_record_with_a_url_encoded_key() -> None:
    [event] = parse_notification(notification(aws_record("incoming/my+photo%2B1.jpg",
                                                         version="3HL4kqtJ")))
    assert event == ObjectCreated(bucket="photos", key="incoming/my photo+1.jpg",
                                  version_id="3HL4kqtJ", sequencer="0055AED6DCD90281E5",
                                  size=1024, etag="d41d8cd98f00b2")


def test_non_ascii_keys_are_decoded() -> None:
    encoded = "caf%C3%A9/cr%C3%A8me+br%C3%BBl%C3%A9e.png"
    [event] = parse_notification(notification(aws_record(encoded)))
    assert event.key == "café/crème brûlée.png"


def test_the_test_event_s3_sends_on_configuration_names_nothing() -> None:
    body = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-05-01T00:00:00Z",
            "Bucket": "photos", "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw..."}
    assert parse_notification(json.dumps(body)) == []
    assert parse_notification(body) == []


def test_other_events_are_ignored_but_created_ones_in_the_same_body_kept() -> None:
    body = notification(aws_record("a.jpg", event="ObjectRemoved:Delete"),
                        aws_record("b.jpg", event="ObjectCreated:CompleteMultipartUpload"),
                        aws_record("c.jpg", event="ObjectRestore:Completed"))
    assert [e.key for e in parse_notification(body)] == ["b.jpg"]


def test_an_unversioned_write_has_no_version_id() -> None:
    [event] = parse_notification(notification(aws_record(version="null")))
    assert event.version_id is None


def test_the_sns_envelope_of_s3_to_sns_to_sqs() -> None:
    body = {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": notification(aws_record("x.png"))}
    assert [e.key for e in parse_notification(json.dumps(body))] == ["x.png"]


def test_a_minio_webhook() -> None:
    record = aws_record("shoes/red+shoe.png", event="s3:ObjectCreated:Put", sequencer=None)
    record["eventSource"] = "minio:s3"
    record["s3"]["object"].update(versionId="", sequencer="17C5B4F8A3B1B5D9",
                                  contentType="image/png")
    body = {"EventName": "s3:ObjectCreated:Put", "Key": "photos/shoes/red shoe.png",
            "Records": [record]}
    [event] = parse_notification(body)
    assert (event.bucket, event.key, event.version_id, event.sequencer) == (
        "photos", "shoes/red shoe.png", None, "17C5B4F8A3B1B5D9")


def test_an_eventbridge_object_created_event_whose_key_is_not_encoded() -> None:
    body = {
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created", "source": "aws.s3", "account": "111122223333",
        "time": "2024-05-01T00:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:s3:::photos"],
        "detail": {"version": "0", "bucket": {"name": "photos"},
                   "object": {"key": "incoming/a+b c.jpg", "size": 5, "etag": "b1946ac924",
                              "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                              "sequencer": "617f08299329d189"},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012",
                   "source-ip-address": "1.2.3.4", "reason": "PutObject"},
    }
    [event] = parse_notification(body)
    assert event == ObjectCreated("photos", "incoming/a+b c.jpg",
                                  "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "617f08299329d189", 5,
                                  "b1946ac924")
    assert parse_notification({**body, "detail-type": "Object Deleted"}) == []


@pytest.mark.parametrize("body", [
    "", "not json", "[1, 2]", "null", '{"hello": "world"}', '{"Records": "nope"}',
    '{"Records": [42]}', notification({"eventName": "ObjectCreated:Put"}),
    notification({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"},
                                                           "object": {"key": ""}}}),
    notification(aws_record() | {"eventName": None}),
    json.dumps({"source": "aws.s3", "detail-type": "Object Created", "detail": {}}),
    b"\xff\xfe",
])
def test_what_is_not_an_event_is_refused(body: str | bytes) -> None:
    with pytest.raises(InvalidEvent) as raised:
        parse_notification(body)
    assert raised.value.reason == "invalid_event"


def test_a_bad_size_is_refused() -> None:
    record = aws_record()
    record["s3"]["object"]["size"] = "big"
    with pytest.raises(InvalidEvent, match="size"):
        parse_notification(notification(record))


# -- rules ------------------------------------------------------------------------------------


def test_the_longest_prefix_wins(rules: EventRules) -> None:
    assert rules.match("photos", "incoming/vip/a.jpg").tenant == "vip"  # type: ignore[union-attr]
    rule = rules.match("photos", "incoming/a.jpg")
    assert rule is not None and rule.priority == 7
    assert rule.options == OutputOptions.parse({"format": "webp", "crop": True}).normalised()
    whole = rules.match("photos", "elsewhere/a.jpg")
    assert whole is not None and whole.prefix == "" and whole.priority == 0
    assert rules.tenants == {"acme", "vip"}


def test_no_rule_for_another_bucket(rules: EventRules) -> None:
    assert rules.match("photos-private", "incoming/a.jpg") is None
    assert rules.match("other", "a.jpg") is None


def test_the_model_defaults_to_the_settings_model() -> None:
    rules = EventRules.parse('[[rule]]\nbucket = "bbb"\ntenant = "t"\n', model="isnet")
    assert rules.rules[0].model == "isnet"


@pytest.mark.parametrize(("text", "message"), [
    ('[[rule]]\nbucket = "photos"\nprefix = "in/"\ntenant = "acme"\n'
     '[rule.options]\nformat = "gif"\n',
     r"rule 1 \(photos/in/\): options: format: 'gif' is not one of png, webp, jpg"),
    ('[[rule]]\nbucket = "aaa"\ntenant = "t"\n[[rule]]\nbucket = "bbb"\ntenant = "t"\n'
     '[rule.options]\ncolour = "red"\n',
     r"rule 2 \(bbb/\): options: unknown option\(s\): 'colour'"),
    ('[[rule]]\nbucket = "photos"\ntenant = "Not A Tenant"\n', "rule 1 .*'tenant'"),
    ('[[rule]]\nbucket = "photos"\ntenant = "t"\npriority = "high"\n', "'priority'"),
    ('[[rule]]\ntenant = "t"\n', "'bucket'"),
    ('[[rule]]\nbucket = "aaa/b"\ntenant = "t"\n', "'bucket'"),
    ('[[rule]]\nbucket = "aaa"\ntenant = "t"\nsuffix = ".jpg"\n',
     r"unknown field\(s\) \['suffix'\]"),
    ('[[rule]]\nbucket = "aaa"\ntenant = "t"\n[[rule]]\nbucket = "aaa"\ntenant = "u"\n',
     "more than one rule for aaa/"),
    ('bucket = "aaa"\n', "unknown table"),
    ("", "no \\[\\[rule\\]\\] tables"),
    ("[[rule]\n", "not valid TOML"),
])
def test_a_bad_rules_file_is_refused_naming_the_rule(text: str, message: str) -> None:
    with pytest.raises(InvalidSettings, match=message):
        EventRules.parse(text, source="rules.toml")


def test_rules_load_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    assert len(EventRules.load(path).rules) == 3
    with pytest.raises(InvalidSettings, match=r"missing\.toml"):
        EventRules.load(tmp_path / "missing.toml")


# -- routing and idempotency ------------------------------------------------------------------


def events(*records: dict[str, Any]) -> list[ObjectCreated]:
    return parse_notification(notification(*records))


def test_a_spec_carries_the_rules_tenant_and_options(rules: EventRules) -> None:
    [(tenant, spec)] = job_specs(events(aws_record("incoming/a.jpg", version="v1")), rules)
    assert tenant == "acme"
    assert (spec.bucket, spec.key, spec.version, spec.priority) == (
        "photos", "incoming/a.jpg", "v1", 7)
    assert spec.options["format"] == "webp" and spec.idempotency_key is None


def test_the_same_event_twice_is_one_job_and_a_new_sequencer_a_new_one(
        rules: EventRules) -> None:
    first = job_specs(events(aws_record("a.jpg", sequencer="0A1")), rules)[0][1]
    again = job_specs(events(aws_record("a.jpg", sequencer="0A1")), rules)[0][1]
    reupload = job_specs(events(aws_record("a.jpg", sequencer="0B2")), rules)[0][1]
    assert first.dedupe_key() == again.dedupe_key()
    assert reupload.dedupe_key() != first.dedupe_key()
    # without a version id the worker reads the announced bytes: If-Match on the ETag
    assert first.version == '"d41d8cd98f00b2"'


def test_with_a_version_id_the_key_is_the_one_any_submission_of_that_version_gets(
        rules: EventRules) -> None:
    spec = job_specs(events(aws_record("a.jpg", version="v9", sequencer="0A1")), rules)[0][1]
    other_sequencer = job_specs(events(aws_record("a.jpg", version="v9", sequencer="0C3")),
                                rules)[0][1]
    assert spec.version == "v9" and spec.idempotency_key is None
    assert spec.dedupe_key() == other_sequencer.dedupe_key()


def test_non_images_unmatched_keys_and_our_own_cut_outs_are_skipped(rules: EventRules) -> None:
    records = events(aws_record("notes.txt"), aws_record("x.jpg", bucket="elsewhere"),
                     aws_record("cutouts/acme/0190.png"), aws_record("cutouts-old/a.png"),
                     aws_record("incoming/ok.PNG"))
    routing = route(records, rules, output_bucket="photos", output_prefix="cutouts")
    assert [s.key for _, s in routing.specs] == ["cutouts-old/a.png", "incoming/ok.PNG"]
    assert [(s.key, s.reason) for s in routing.skipped] == [
        ("notes.txt", "not_an_image"), ("x.jpg", "no_rule"),
        ("cutouts/acme/0190.png", "own_output")]
    # the same key in another bucket is a source like any other
    elsewhere = route(records, rules, output_bucket="cutout-bucket")
    assert "cutouts/acme/0190.png" in [s.key for _, s in elsewhere.specs]


def test_the_services_previews_and_uploads_are_never_sources(rules: EventRules) -> None:
    from pipeline.output_keys import service_areas
    from pipeline.tenants import UploadArea

    areas = service_areas("photos", UploadArea("photos", "uploads"))
    records = events(aws_record("previews/acme/j1/cutout-192-ab.png"),
                     aws_record("uploads/acme/0f3a"), aws_record("uploads-old/a.png"))
    routing = route(records, rules, output_bucket="photos", output_prefix="cutouts",
                    service_areas=areas)
    assert [(s.key, s.reason) for s in routing.skipped] == [
        ("previews/acme/j1/cutout-192-ab.png", "own_output"), ("uploads/acme/0f3a", "own_output")]
    assert [s.key for _, s in routing.specs] == ["uploads-old/a.png"]


def test_an_empty_output_prefix_guards_the_whole_output_bucket(rules: EventRules) -> None:
    routing = route(events(aws_record("acme/0190.png")), rules, output_bucket="photos",
                    output_prefix="")
    assert [s.reason for s in routing.skipped] == ["own_output"]


def test_an_event_whose_key_the_ledger_cannot_hold_is_skipped_alone(rules: EventRules) -> None:
    records = parse_notification(notification(
        aws_record("incoming/a%00b.jpg"), aws_record("incoming/bell%07.jpg"),
        aws_record("incoming/ok.jpg"), aws_record("x.jpg", version="v\u0001")))
    routing = route(records, rules)
    assert [s.key for _, s in routing.specs] == ["incoming/ok.jpg"]
    assert [(s.key, s.reason) for s in routing.skipped] == [
        ("incoming/a\\x00b.jpg", "invalid_field"), ("incoming/bell\\x07.jpg", "invalid_field"),
        ("x.jpg", "invalid_field")]


def test_a_body_nested_too_deep_is_not_an_event() -> None:
    with pytest.raises(InvalidEvent, match="nested too deep"):
        parse_notification("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize(("text", "message"), [
    ('[[rule]]\nbucket = "photos"\ntenant = "t"\npriority = 40000\n',
     "'priority': must be between -100 and 100, got 40000"),
    ('[[rule]]\nbucket = "photos"\nprefix = "in\\u0000/"\ntenant = "t"\n',
     "'prefix': contains the control character U+0000"),
    ('[[rule]]\nbucket = "photos"\ntenant = "t"\nmodel = "' + "m" * 80 + '"\n',
     "'model': is 80 characters long"),
    ('[[rule]]\nbucket = "photos"\ntenant = "acme\\n"\n', "'tenant': contains the control"),
])
def test_a_rule_the_ledger_cannot_hold_stops_the_rules_file(text: str, message: str) -> None:
    with pytest.raises(InvalidSettings) as refused:
        EventRules.parse(text)
    assert message in str(refused.value) and "\x00" not in str(refused.value)


# -- submission -------------------------------------------------------------------------------

TENANTS = {"acme": Tenant("acme", "Acme", allow_any=True),
           "vip": Tenant("vip", "VIP", ("photos/incoming/vip/only/",))}


def ledger() -> MemoryLedger:
    made = MemoryLedger()
    for tenant in TENANTS:
        made.ensure_tenant(tenant)
    return made


def test_submit_records_once_and_publishes_only_new_jobs(rules: EventRules) -> None:
    store, queue = ledger(), MemoryQueue()
    records = events(aws_record("incoming/a.jpg", sequencer="01"),
                     aws_record("b.jpg", sequencer="02"))
    outcome = submit_events(records, rules, store, queue, tenants=TENANTS.get)
    assert len(outcome.created) == 2 and outcome.published
    assert queue.drain() == [Dispatch(j.id, j.priority) for j in outcome.created]
    assert [j.priority for j in outcome.created] == [7, 0]
    # delivered again, out of order: the same jobs, nothing published
    again = submit_events(list(reversed(records)), rules, store, queue, tenants=TENANTS.get)
    assert again.created == () and {j.id for j in again.existing} == {
        j.id for j in outcome.created}
    assert queue.drain() == []
    assert len(store.list_jobs(tenant="acme", status=JobStatus.QUEUED)) == 2


def test_a_tenant_allowlist_refuses_sources_outside_it(rules: EventRules) -> None:
    store, queue = ledger(), MemoryQueue()
    outcome = submit_events(events(aws_record("incoming/vip/a.jpg"),
                                   aws_record("incoming/vip/only/b.jpg")),
                            rules, store, queue, tenants=TENANTS.get)
    assert [j.key for j in outcome.created] == ["incoming/vip/only/b.jpg"]
    assert [(s.key, s.reason, s.tenant) for s in outcome.skipped] == [
        ("incoming/vip/a.jpg", "source_not_allowed", "vip")]


def test_a_tenant_removed_since_start_skips_its_events(rules: EventRules) -> None:
    outcome = submit_events(events(aws_record("a.jpg")), rules, ledger(), MemoryQueue(),
                            tenants=lambda _: None)
    assert [s.reason for s in outcome.skipped] == ["unknown_tenant"] and not outcome.created


class DownBroker:
    """Redis refusing every message: what the ledger records must not depend on it."""

    def publish(self, dispatches: Sequence[Dispatch]) -> None:
        raise BrokerUnavailable("redis://127.0.0.1:6379/0: connection refused")

    def depth(self) -> int:
        raise BrokerUnavailable("redis://127.0.0.1:6379/0: connection refused")


def test_a_broker_that_is_down_leaves_the_jobs_recorded_for_the_reconciler(
        rules: EventRules) -> None:
    store = ledger()
    outcome = submit_events(events(aws_record("a.jpg")), rules, store, DownBroker(),
                            tenants=TENANTS.get)
    assert not outcome.published and len(outcome.created) == 1
    assert store.get(outcome.created[0].id).status is JobStatus.QUEUED
