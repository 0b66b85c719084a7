"""``POST /v1/events/webhook``: S3-style ObjectCreated notifications pushed over HTTP (MinIO's
webhook target, EventBridge API destinations, SNS-wrapped S3 events), through the same code as
``clipline events`` (``pipeline.events``): the same rules, the same idempotency.

The caller proves itself with a shared secret (``CLIPLINE_EVENTS_WEBHOOK_SECRET``) in the
``Authorization: Bearer`` header, compared in constant time. The webhook is off until both the
secret and the rules file are set.
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

router = APIRouter(prefix="/v1/events", tags=["events"])


class WebhookResult(BaseModel):
    created: int
    existing: int
    skipped: int
    published: bool


@cache
def _rules(path: Path, model: str) -> EventRules:
    return EventRules.load(path, model=model)


@router.post("/webhook", response_model=WebhookResult)
async def webhook(request: Request, authorization: str | None = Header(default=None),
                  d: ApiDeps = Depends(deps)) -> Any:
    """Accept one notification document; answer once its jobs are recorded (a 2xx means the
    sender may forget it)."""
    secret, rules_file = d.settings.events_webhook_secret, d.settings.events_rules_file
    if not secret or rules_file is None:
        raise Problem(404, "not_found", "The events webhook is not enabled")
    given = (authorization or "").removeprefix("Bearer ").encode()
    if not hmac.compare_digest(given, secret.get_secret_value().encode()):
        raise Problem(401, "unauthorized", "The webhook secret is missing or wrong")
    records = parse_notification(await request.body())
    outcome = submit_events(records, _rules(rules_file, d.settings.model), d.ledger, d.queue,
                            tenants=d.tenants.get, output_bucket=d.settings.s3_output_bucket,
                            output_prefix=d.settings.output_prefix)
    return WebhookResult(created=len(outcome.created), existing=len(outcome.existing),
                         skipped=len(outcome.skipped), published=outcome.published)
