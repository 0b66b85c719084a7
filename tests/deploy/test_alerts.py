"""The alert rules parse, use only metrics Clipline exports, and are explained in the docs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
OPERATIONS = (ROOT / "docs" / "OPERATIONS.md").read_text()
EXPORTED = {
    "clipline_job_stage_seconds_bucket", "clipline_jobs_total", "clipline_queue_depth",
    "clipline_reconciler_published_total", "clipline_reconciler_reaped_total",
    "clipline_api_requests_total", "clipline_api_request_seconds_bucket",
    "clipline_circuit_open",
}


def rules() -> list[dict[str, object]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def test_every_alert_is_well_formed_and_documented() -> None:
    found = rules()
    assert len(found) >= 5
    for rule in found:
        assert {"alert", "expr", "labels", "annotations"} <= set(rule)
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}  # type: ignore[index]
        assert f"**{rule['alert']}:**" in OPERATIONS, f"{rule['alert']} is not explained"


def test_alerts_use_only_exported_metrics() -> None:
    from pipeline import metrics  # the worker and reconciler metrics are registered here

    registered = (metrics.STAGE_SECONDS, metrics.JOBS, metrics.QUEUE_DEPTH,
                  metrics.RECONCILER_PUBLISHED, metrics.RECONCILER_REAPED, metrics.CIRCUIT_OPEN)
    names = {m.describe()[0].name for m in registered}
    assert {"clipline_job_stage_seconds", "clipline_jobs", "clipline_queue_depth",
            "clipline_circuit_open"} <= names
    for rule in rules():
        used = set(re.findall(r"clipline_[a-z_]+", str(rule["expr"])))
        assert used <= EXPORTED, f"{rule['alert']} uses {used - EXPORTED}"
