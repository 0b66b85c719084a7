"""Prometheus metrics of the workers and the reconciler (the API keeps its own registry).

Worker pool processes are forked, so the counters live in prometheus-client's multiprocess
mode: every process writes to files in ``PROMETHEUS_MULTIPROC_DIR`` and the worker's main
process serves their sum (``clipline worker`` sets the directory up before anything imports
prometheus-client; see ``clipline.cli.worker``).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

# Seconds; a stage of a catalog photo takes milliseconds to a few seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

STAGE_SECONDS = Histogram("clipline_job_stage_seconds", "Time per stage of a job.", ["stage"],
                          buckets=BUCKETS)
JOBS = Counter("clipline_jobs", "Job runs by outcome, and reason for failures.",
               ["outcome", "reason"])
QUEUE_DEPTH = Gauge("clipline_queue_depth", "Messages waiting in the broker, per queue.",
                    ["queue"], multiprocess_mode="livemax")
RECONCILER_PUBLISHED = Counter("clipline_reconciler_published",
                               "Messages the reconciler (re-)published.")
EVENTS = Counter("clipline_events", "S3 events and messages handled by `clipline events`, by "
                 "result (messages, jobs_created, jobs_existing, skipped_<reason>, ...).",
                 ["result"])
RECONCILER_REAPED = Counter("clipline_reconciler_reaped", "Expired leases taken back.",
                            ["result"])
CIRCUIT_OPEN = Gauge("clipline_circuit_open", "1 while a worker process's circuit breaker for a "
                     "dependency is open (it takes no jobs); see pipeline/breaker.py.",
                     ["dependency"], multiprocess_mode="livemax")


def job_finished(outcome: str, reason: str | None, timings_ms: Mapping[str, float]) -> None:
    JOBS.labels(outcome, reason or "").inc()
    for stage, ms in timings_ms.items():
        STAGE_SECONDS.labels(stage).observe(ms / 1000)
