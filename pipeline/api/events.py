"""``POST /v1/events/webhook``: S3-style ObjectCreated notifications pushed over HTTP (MinIO's
webhook target, EventBridge API destinations, SNS-wrapped S3 events), through the same code as
``clipline events`` (``pipeline.events``): the same rules, the same idempotency.

The caller proves itself with a shared secret (``CLIPLINE_EVENTS_WEBHOOK_SECRET``) in the
``Authorization: Bearer`` header, compared in constant time. The webhook is off until both the
secret and the rules file are set. The secret is checked before the body is read; the body is
parsed within ``pipeline.json_limits`` (``pipeline.events``), and the ledger's blocking calls run
in a worker thread (a sync route), never on the event loop.
"""

from __future__ import annotations

import hmac
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel

from pipeline.api.deps import ApiDeps, deps
from pipeline.api.problems import Problem
from pipeline.event_rules import EventRules
from pipeline.events import parse_notification, submit_events
from pipeline.output_keys import service_areas

router = APIRouter(prefix="/v1/events", tags=["events"])
WEBHOOK = "/webhook"
WEBHOOK_PATH = router.prefix + WEBHOOK  # the door leaves its authentication to it


class WebhookResult(BaseModel):
    created: int
    existing: int
    skipped: int
    published: bool


@cache
def _rules(path: Path, model: str, served: tuple[str, ...], output_prefix: str) -> EventRules:
    return EventRules.load(path, model=model, served=served, output_prefix=output_prefix)


def _authorized(authorization: str | None = Header(default=None),
                d: ApiDeps = Depends(deps)) -> EventRules:
    """The rules; 404 while the webhook is off, 401 without the secret: before the body is
    read."""
    secret, rules_file = d.settings.events_webhook_secret, d.settings.events_rules_file
    if not secret or rules_file is None:
        raise Problem(404, "not_found", "The events webhook is not enabled")
    scheme, _, token = (authorization or "").partition(" ")
    given = token.encode() if scheme == "Bearer" else b""
    if not hmac.compare_digest(given, secret.get_secret_value().encode()):
        raise Problem(401, "unauthorized", "The webhook secret is missing or wrong")
    return _rules(rules_file, d.settings.model, d.settings.served, d.settings.output_prefix)


async def _body(request: Request, _: EventRules = Depends(_authorized)) -> bytes:
    """The raw notification, read (on the event loop, counted by the door) once authorized."""
    return await request.body()


@router.post(WEBHOOK, response_model=WebhookResult)
def webhook(body: bytes = Depends(_body), rules: EventRules = Depends(_authorized),
            d: ApiDeps = Depends(deps)) -> Any:
    """Accept one notification document; answer once its jobs are recorded (a 2xx means the
    sender may forget it)."""
    # A plain `def`: the ledger's calls block, so FastAPI runs this in a worker thread.
    records = parse_notification(body)
    outcome = submit_events(records, rules, d.ledger, d.queue, tenants=d.tenants.get,
                            output_bucket=d.settings.s3_output_bucket,
                            output_prefix=d.settings.output_prefix,
                            service_areas=service_areas(d.settings.s3_output_bucket,
                                                        d.settings.upload_area))
    return WebhookResult(created=len(outcome.created), existing=len(outcome.existing),
                         skipped=len(outcome.skipped), published=outcome.published)
