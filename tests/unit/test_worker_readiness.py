"""The worker's /readyz rule, over the pool's summed metrics (workers/metrics.py)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from workers.metrics import pool_state, readiness


def test_ready_when_nothing_is_open_and_triton_answered_at_start() -> None:
    assert readiness([], 0, inference_answered_at_start=True) == (True, "ready")


def test_an_open_circuit_makes_the_worker_not_ready_naming_the_dependencies() -> None:
    assert readiness(["storage", "inference", "inference"], 10, True) == (
        False, "not ready: circuit open for inference, storage (no jobs taken)")


@pytest.mark.parametrize(("succeeded", "ready"), [(0, False), (1, True)])
def test_triton_down_at_start_is_not_ready_until_a_job_succeeds(succeeded: int,
                                                                ready: bool) -> None:
    assert readiness([], succeeded, inference_answered_at_start=False)[0] is ready


def test_pool_state_reads_the_circuit_gauge_and_the_succeeded_runs() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("clipline_circuit_open", "test", ["dependency"], registry=registry)
    jobs = Counter("clipline_jobs", "test", ["outcome", "reason"], registry=registry)
    gauge.labels("inference").set(1)
    gauge.labels("ledger").set(0)
    jobs.labels("succeeded", "").inc(3)
    jobs.labels("dead", "corrupt_image").inc()
    assert pool_state(registry.collect()) == (["inference"], 3.0)
