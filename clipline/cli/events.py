"""``clipline events``: S3 "object created" notifications from an SQS queue become jobs.

One pass: receive a batch (long poll) → parse each message → record its jobs (committed) →
publish the new ones → delete the messages whose jobs are committed. A crash anywhere before the
delete only means the message comes back and its jobs fold into the ones already recorded.

A message that is not an event stays in the queue (``event_unparseable`` each time it is seen):
the queue's redrive policy moves it to its dead-letter queue after ``maxReceiveCount`` receives.
A queue without one would hand it back for ever, so it is then deleted at the
``CLIPLINE_EVENTS_MAX_RECEIVES``-th receive and logged as ``event_dropped``, with its body.
"""

from __future__ import annotations

import json
import signal
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from prometheus_client import start_http_server

from clipline.cli.context import celery_queue, checked_ledger, load_settings
from pipeline import logs, metrics
from pipeline.errors import InvalidEvent, InvalidSettings, TransientError
from pipeline.event_rules import EventRules
from pipeline.events import (
    ObjectCreated,
    TenantLookup,
    parse_notification,
    publish_created,
    record_events,
)
from pipeline.jobs import Job
from pipeline.output_keys import service_areas
from pipeline.settings import Settings

if TYPE_CHECKING:  # boto3 is imported when the command runs, not whenever `clipline` starts
    from pipeline.adapters.events.sqs import Message, SqsSource

log = logs.get(__name__)
BODY_LOGGED = 500  # characters of an unparseable body kept in its log line
MAX_PAUSE_SECONDS = 30.0


@dataclass
class Intake:
    """What a pass needs, built once at start; ``totals`` counts across passes."""

    source: SqsSource
    rules: EventRules
    ledger: Any
    queue: Any
    tenants: TenantLookup
    settings: Settings
    redrive_max_receives: int | None
    totals: Counter[str] = field(default_factory=Counter)

    def handle(self, messages: list[Message]) -> None:
        """Record the batch's jobs, then publish and delete what is committed, even when a
        later message of the batch failed (that one stays, and comes back)."""
        done: list[str] = []
        created: list[Job] = []
        try:
            for message in messages:
                records = self._parse(message, done)
                if records is None:
                    continue
                outcome = record_events(
                    records, self.rules, self.ledger, tenants=self.tenants,
                    output_bucket=self.settings.s3_output_bucket,
                    output_prefix=self.settings.output_prefix,
                    service_areas=service_areas(self.settings.s3_output_bucket,
                                                self.settings.upload_area))
                done.append(message.receipt)
                created += outcome.created
                self.totals["jobs_created"] += len(outcome.created)
                self.totals["jobs_existing"] += len(outcome.existing)
                self.totals.update(f"skipped_{s.reason}" for s in outcome.skipped)
        finally:
            self.totals["messages"] += len(messages)
            if not publish_created(self.queue, created):
                self.totals["publish_deferred"] += len(created)
            refused = self.source.delete(done)
            self.totals["deleted"] += len(done) - len(refused)
            if refused:
                log.warning("event_delete_refused", messages=len(refused))
            log.info("events_batch", messages=len(messages), jobs_created=len(created),
                     deleted=len(done) - len(refused))

    def _parse(self, message: Message, done: list[str]) -> list[ObjectCreated] | None:
        try:
            return parse_notification(message.body)
        except InvalidEvent as exc:
            self.totals["unparseable"] += 1
            limit = self.redrive_max_receives or self.settings.events_max_receives
            fields = {"message_id": message.id, "receive_count": message.receive_count,
                      "max_receives": limit, "reason": exc.reason, "error": str(exc),
                      "body": message.body[:BODY_LOGGED]}
            log.warning("event_unparseable", **fields)
            if self.redrive_max_receives is None and message.receive_count >= limit:
                self.totals["dropped"] += 1
                log.error("event_dropped", **fields)
                done.append(message.receipt)
            return None

    def summary(self) -> dict[str, Any]:
        skipped = {k.removeprefix("skipped_"): v for k, v in sorted(self.totals.items())
                   if k.startswith("skipped_")}
        keys = ("messages", "jobs_created", "jobs_existing", "unparseable", "dropped",
                "deleted", "publish_deferred")
        return {**{k: self.totals[k] for k in keys}, "skipped": skipped}


def run(intake: Intake, stop: threading.Event, *, once: bool) -> None:
    """Pass after pass until ``stop`` (or, with ``once``, until a poll comes back empty).
    A transient failure (SQS, the ledger) pauses with backoff and tries again; with ``once``
    it is the command's failure."""
    failures = 0
    while not stop.is_set():
        try:
            messages = intake.source.receive()
            if not messages and once:
                return
            if messages:
                before = Counter(intake.totals)
                intake.handle(messages)
                for result, n in (intake.totals - before).items():
                    metrics.EVENTS.labels(result).inc(n)
            failures = 0
        except TransientError as exc:
            if once:
                raise
            failures += 1
            pause = min(MAX_PAUSE_SECONDS, 0.5 * 2 ** failures)
            log.warning("events_paused", reason=exc.reason, error=exc.message, seconds=pause)
            stop.wait(pause)


def events(
    once: bool = typer.Option(False, "--once", help="Drain the queue: receive until a poll "
                              "comes back empty, print a JSON summary, exit."),
    wait: int = typer.Option(20, "--wait", min=0, max=20, help="Seconds each receive waits "
                             "for a message (SQS long polling, 0 to 20)."),
    rules_file: Path | None = typer.Option(None, "--rules", dir_okay=False, help="The rules "
                                           "file (default CLIPLINE_EVENTS_RULES_FILE)."),
) -> None:
    """Turn S3 ObjectCreated notifications from an SQS queue into jobs.

    Point the buckets' notifications (s3:ObjectCreated:*) at the queue CLIPLINE_SQS_QUEUE_URL.
    The rules file (TOML, [[rule]] tables with bucket, prefix, tenant, priority and
    [rule.options]) says which tenant and output options a new object gets; the longest
    matching prefix wins, and objects no rule covers, non-images and Clipline's own cut-outs
    are skipped. Every tenant a rule names must exist (clipline tenants create).

    A message is deleted once its jobs are committed; an event delivered twice or out of order
    folds into the job already recorded. A message that cannot be parsed is left to the
    queue's redrive policy (dead-letter queue); without one it is dropped, and logged, after
    CLIPLINE_EVENTS_MAX_RECEIVES receives. SIGTERM or Ctrl-C stops after the current batch.
    """
    settings = load_settings()
    intake = _intake(settings, rules_file, wait)
    if settings.events_metrics_port and not once:
        start_http_server(settings.events_metrics_port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        log.info("events_started", queue=settings.sqs_queue_url, rules=len(intake.rules.rules),
                 redrive_max_receives=intake.redrive_max_receives,
                 max_receives=settings.events_max_receives)
        run(intake, stop, once=once)
        log.info("events_stopped", **intake.summary())
    finally:
        intake.ledger.close()
    if once:
        typer.echo(json.dumps(intake.summary()))


def _intake(settings: Settings, rules_file: Path | None, wait: int) -> Intake:
    """Everything checked before the first receive: the queue URL, the rules, the tenants
    they name, the ledger's schema and the queue itself (it exists, and its redrive policy)."""
    from pipeline.adapters.events.sqs import SqsSource, make_client
    from pipeline.adapters.ledger.tenants import TenantStore

    if not settings.sqs_queue_url:
        raise InvalidSettings("CLIPLINE_SQS_QUEUE_URL is not set (the queue the buckets notify)")
    path = rules_file or settings.events_rules_file
    if path is None:
        raise InvalidSettings("no rules: set CLIPLINE_EVENTS_RULES_FILE or pass --rules")
    rules = EventRules.load(path, model=settings.model, served=settings.served,
                            output_prefix=settings.output_prefix)
    ledger = checked_ledger(settings)
    try:
        tenants = TenantStore(ledger.engine, ledger.clock)
        missing = sorted(t for t in rules.tenants if tenants.get(t) is None)
        if missing:
            raise InvalidSettings(f"{path}: no tenant {', '.join(missing)} in the ledger; "
                                  "create it first with `clipline tenants create`")
        source = SqsSource(make_client(settings, wait_seconds=wait), settings.sqs_queue_url,
                           wait_seconds=wait)
        redrive = source.redrive_max_receives()
    except BaseException:
        ledger.close()
        raise
    return Intake(source, rules, ledger, celery_queue(settings), tenants.get, settings, redrive)
