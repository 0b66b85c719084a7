"""S3 event intake end to end: moto's S3 really notifies moto's SQS, and `clipline events` turns
the notifications into jobs that a real worker cuts out.

Every service is real: PostgreSQL, Redis, moto's S3 + SQS server, `clipline events` and
`clipline worker` processes configured through the environment. The segmenter is the fake
stand-in (SEGMENTER=fake): what is under test is the intake and the orchestration, not the
quality of a cut-out.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from pipeline.adapters.events.sqs import SqsSource
from pipeline.adapters.ledger.tenants import TenantStore
from pipeline.errors import EventSourceUnavailable, InvalidSettings
from pipeline.jobs import JobStatus
from tests.distkit import AWS, CLIPLINE, Cluster, cluster, wait_for
from tests.pictures import square
from tests.tritonkit import free_port


def slow(test: Any) -> Any:
    """A whole deployment: PostgreSQL, Redis and processes (the adapter tests need only moto)."""
    for mark in (pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)):
        test = mark(test)
    return test

RULES = """
[[rule]]
bucket = "{bucket}"
tenant = "acme"

[[rule]]
bucket = "{bucket}"
prefix = "incoming/"
tenant = "acme"
priority = 1
[rule.options]
format = "webp"
crop = true
"""


def sqs_client(endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"])


def png(n: int) -> bytes:
    """A small picture of its own per n (so every object has its own ETag)."""
    return square((48, 48), (12, 12, 36, 36), (n % 256, 40, 200 - n % 150),
                  ground=(250, 250, 250))


@dataclass
class Events:
    cluster: Cluster
    sqs: Any
    bucket: str
    queue_url: str
    log_dir: Path

    def make_queue(self, visibility: int = 30, dead_letter_after: int | None = None) -> str:
        """A new source queue for the `clipline events` processes started after this call;
        with ``dead_letter_after``, a redrive policy to a new dead-letter queue, whose URL is
        returned."""
        attributes = {"VisibilityTimeout": str(visibility)}
        dlq = ""
        if dead_letter_after is not None:
            dlq = self.sqs.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": arn(self.sqs, dlq), "maxReceiveCount": dead_letter_after})
        url: str = self.sqs.create_queue(QueueName=f"events-{uuid.uuid4().hex[:8]}",
                                         Attributes=attributes)["QueueUrl"]
        self.cluster.values["SQS_QUEUE_URL"] = url
        self.queue_url = url
        return dlq

    def notify(self) -> None:
        """Point the bucket's ObjectCreated notifications at the queue (S3 sends a test event)."""
        self.cluster.s3.client.put_bucket_notification_configuration(
            Bucket=self.bucket, NotificationConfiguration={"QueueConfigurations": [{
                "Id": "clipline", "QueueArn": arn(self.sqs, self.queue_url),
                "Events": ["s3:ObjectCreated:*"]}]})

    def drain(self, url: str | None = None) -> list[str]:
        """Take every visible message off a queue (deleting it): the raw bodies."""
        bodies: list[str] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=url or self.queue_url,
                                           MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return bodies
            bodies += [m["Body"] for m in got]
            self.sqs.delete_message_batch(QueueUrl=url or self.queue_url, Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(got)])

    def send(self, bodies: list[str]) -> None:
        for start in range(0, len(bodies), 10):
            self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies[start:start + 10])])

    def in_queue(self) -> int:
        """Messages in the queue, visible or held by a consumer."""
        found = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        return sum(int(v) for v in found["Attributes"].values())

    def run_once(self) -> dict[str, Any]:
        done = subprocess.run([CLIPLINE, "events", "--once", "--wait", "1"],
                              env=self.cluster.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        summary: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        return summary

    def jobs(self) -> list[Any]:
        return self.cluster.ledger.list_jobs(tenant="acme", limit=10_000)


def arn(sqs: Any, url: str) -> str:
    found: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    return found


def log_events(path: Path, name: str) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            item = json.loads(line)
            if item.get("event") == name:
                found.append(item)
    return found


@pytest.fixture
def ev(tmp_path: Path, s3_endpoint: str) -> Iterator[Events]:
    # Cut-outs land in the source bucket itself (under cutouts/): their own ObjectCreated
    # events reach the queue too, which is what the self-trigger guard is for.
    bucket = f"evt-{uuid.uuid4().hex[:8]}"
    with cluster(tmp_path, s3_endpoint, redis_db=5, SEGMENTER="fake", S3_OUTPUT_BUCKET=bucket,
                 SQS_ENDPOINT_URL=s3_endpoint, EVENTS_MAX_RECEIVES="3") as c:
        rules = tmp_path / "rules.toml"
        rules.write_text(RULES.format(bucket=bucket))
        c.values["EVENTS_RULES_FILE"] = str(rules)
        TenantStore(c.ledger.engine).save("acme", "Acme", allowed_sources=[f"{bucket}/"])
        made = Events(c, sqs_client(s3_endpoint), bucket, "", tmp_path)
        made.make_queue()
        try:
            yield made
        finally:
            # the session's moto outlives the test: no notifications to a queue left behind
            c.s3.client.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={})


@slow
def test_uploads_become_one_job_each_however_often_their_events_arrive(ev: Events) -> None:
    c, s3 = ev.cluster, ev.cluster.s3
    ev.notify()
    keys = [f"incoming/item {n}+{n}.png" for n in range(100)]  # a space and a plus, encoded
    for n, key in enumerate(keys):
        s3.put(ev.bucket, key, png(n), content_type="image/png")
    # S3's own notifications, taken off the queue so that they can be delivered again later
    originals = ev.drain()
    assert len(originals) == 101 and sum('"s3:TestEvent"' in b for b in originals) == 1
    ev.send(originals)

    port = free_port()
    c.values["EVENTS_METRICS_PORT"] = str(port)
    proc = c.start("events", "--wait", "1", ready="events_started")
    wait_for(lambda: len(ev.jobs()) == 100 and ev.in_queue() == 0, 60,
             "100 jobs and an empty queue", c.logs)
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'clipline_events_total{result="jobs_created"} 100.0' in scraped
    c.values["EVENTS_METRICS_PORT"] = "0"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, c.logs()
    log = c.processes[-1][1]
    [stopped] = log_events(log, "events_stopped")
    assert stopped["jobs_created"] == 100 and stopped["deleted"] == 101

    jobs = ev.jobs()
    assert sorted(j.key for j in jobs) == sorted(keys)
    for job in jobs:
        assert job.status is JobStatus.QUEUED and job.priority == 1
        assert job.options["format"] == "webp" and job.options["crop"] is True
        assert job.version is not None and job.version.startswith('"')  # If-Match on the ETag

    c.start_worker()

    def all_done() -> bool:
        return len(ev.cluster.ledger.list_jobs(tenant="acme", status=JobStatus.SUCCEEDED,
                                               limit=1000)) == 100

    wait_for(all_done, 120, "100 cut-outs", c.logs)
    outputs = list(s3.list_keys(ev.bucket, "cutouts/acme/"))
    assert sorted(outputs) == sorted(f"cutouts/acme/{j.id}.webp" for j in jobs)

    # Every original event twice more, shuffled, behind the cut-outs' own 100 events.
    again = originals * 2
    random.Random(7).shuffle(again)
    ev.send(again)
    summary = ev.run_once()
    assert summary["jobs_created"] == 0, summary
    assert summary["jobs_existing"] == 200
    assert summary["skipped"] == {"own_output": 100}  # the cut-outs are never sources
    assert summary["messages"] == summary["deleted"] == 302
    assert len(ev.jobs()) == 100
    assert ev.in_queue() == 0


@slow
def test_with_the_broker_down_jobs_are_recorded_and_the_reconciler_publishes_them(
        ev: Events) -> None:
    c = ev.cluster
    ev.notify()
    c.s3.put(ev.bucket, "incoming/late.png", png(3), content_type="image/png")
    redis = c.values["REDIS_URL"]
    c.values["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    summary = ev.run_once()
    assert summary["jobs_created"] == 1 and summary["publish_deferred"] == 1, summary
    assert summary["deleted"] == 2 and ev.in_queue() == 0  # the job is committed: no redelivery
    [job] = ev.jobs()
    c.values["REDIS_URL"] = redis
    c.start_worker(concurrency=1)
    c.start_reconciler()  # publishes queued jobs whose message never reached the broker
    wait_for(lambda: c.ledger.get(job.id).status is JobStatus.SUCCEEDED, 60,
             "the job to be published by the reconciler and cut out", c.logs)


@slow
def test_an_unparseable_message_is_kept_until_max_receives_then_dropped(ev: Events) -> None:
    c = ev.cluster
    ev.make_queue(visibility=1)  # no redrive policy: CLIPLINE_EVENTS_MAX_RECEIVES (3) applies
    c.s3.put(ev.bucket, "incoming/fine.png", png(1), content_type="image/png")
    ev.send(["this is not an event", json.dumps({"Records": [{
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": ev.bucket}, "object": {"key": "incoming/fine.png"}}}]})])
    proc = c.start("events", "--wait", "1", ready="events_started")
    log = c.processes[-1][1]
    wait_for(lambda: bool(log_events(log, "event_dropped")), 60, "the message to be dropped",
             c.logs)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, c.logs()

    seen = log_events(log, "event_unparseable")
    # received three times: it was not deleted before the third receive
    assert [e["receive_count"] for e in seen] == [1, 2, 3]
    assert all(e["reason"] == "invalid_event" and e["body"] == "this is not an event"
               for e in seen)
    [dropped] = log_events(log, "event_dropped")
    assert dropped["receive_count"] == 3 and dropped["max_receives"] == 3
    assert [j.key for j in ev.jobs()] == ["incoming/fine.png"]  # the good message was not held
    assert ev.in_queue() == 0


@slow
def test_with_a_redrive_policy_an_unparseable_message_goes_to_the_dead_letter_queue(
        ev: Events) -> None:
    c = ev.cluster
    dlq = ev.make_queue(visibility=1, dead_letter_after=2)
    ev.send(['{"Records": [{"eventName": "ObjectCreated:Put"}]}'])
    c.start("events", "--wait", "1", ready="events_started")
    log = c.processes[-1][1]
    wait_for(lambda: ev.in_queue() == 0 and len(log_events(log, "event_unparseable")) >= 2, 60,
             "the message to leave the source queue", c.logs)
    # The move keeps the message's visibility timeout: it may take a second to show there.
    moved: list[str] = []
    wait_for(lambda: bool(moved.extend(ev.drain(dlq)) or moved), 30,
             "the message to show in the dead-letter queue", c.logs)
    assert moved == ['{"Records": [{"eventName": "ObjectCreated:Put"}]}']
    assert log_events(log, "event_dropped") == []  # SQS moved it; Clipline never deleted it
    assert {e["max_receives"] for e in log_events(log, "event_unparseable")} == {2}
    [started] = log_events(log, "events_started")
    assert started["redrive_max_receives"] == 2


@slow
def test_the_command_refuses_to_start_on_a_bad_configuration(ev: Events) -> None:
    c = ev.cluster

    def refused(**values: str) -> str:
        env = {**c.env, **{f"CLIPLINE_{k}": v for k, v in values.items()}}
        done = subprocess.run([CLIPLINE, "events", "--once", "--wait", "0"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (done.stdout, done.stderr)
        return done.stderr

    ghost = ev.log_dir / "ghost.toml"
    ghost.write_text(f'[[rule]]\nbucket = "{ev.bucket}"\ntenant = "ghost"\n')
    assert "no tenant ghost in the ledger" in refused(EVENTS_RULES_FILE=str(ghost))
    bad = ev.log_dir / "bad.toml"
    bad.write_text(f'[[rule]]\nbucket = "{ev.bucket}"\nprefix = "in/"\ntenant = "acme"\n'
                   '[rule.options]\nformat = "gif"\n')
    assert f"rule 1 ({ev.bucket}/in/): options: format" in refused(EVENTS_RULES_FILE=str(bad))
    missing_queue = ev.queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    assert "CLIPLINE_SQS_QUEUE_URL" in refused(SQS_QUEUE_URL=missing_queue)
    assert "CLIPLINE_SQS_QUEUE_URL is not set" in refused(SQS_QUEUE_URL="")


def test_the_sqs_source_receives_counts_and_deletes(s3_endpoint: str) -> None:
    sqs = sqs_client(s3_endpoint)
    url = sqs.create_queue(QueueName=f"src-{uuid.uuid4().hex[:8]}",
                           Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    source = SqsSource(sqs, url, wait_seconds=1)
    assert source.redrive_max_receives() is None
    for n in range(12):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
    first = source.receive()
    assert len(first) == 10 and {m.receive_count for m in first} == {1}
    assert source.delete([m.receipt for m in first] + [first[0].receipt]) == []
    rest = source.receive()
    assert sorted(m.body for m in [*first, *rest]) == sorted(f"m{n}" for n in range(12))
    assert source.delete(["not-a-receipt"]) == ["not-a-receipt"]

    def back_again() -> bool:  # not deleted: visible again after the 1 s visibility timeout
        again = source.receive()
        return bool(again) and {m.receive_count for m in again} == {2} and not source.delete(
            [m.receipt for m in again])

    wait_for(back_again, 10, "the undeleted messages to come back, counted twice")
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(InvalidSettings, match="CLIPLINE_SQS_QUEUE_URL"):
        source.receive()


def test_an_unreachable_queue_is_a_transient_failure() -> None:
    sqs = boto3.client("sqs", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x",
                       config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    with pytest.raises(EventSourceUnavailable):
        SqsSource(sqs, "http://127.0.0.1:9/123456789012/q", wait_seconds=0).receive()
