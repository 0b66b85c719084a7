"""Prometheus metrics scraped from a running worker (its pool processes summed) and reconciler."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from pipeline.jobs import Dispatch, JobSpec, JobStatus
from tests.distkit import cluster, wait_for
from tests.modelkit import TEST_MODEL
from tests.pictures import square
from tests.tritonkit import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{sample} not in:\n{text[:3000]}"
    return float(match.group(1))


def test_worker_and_reconciler_metrics(tmp_path: Path, s3_endpoint: str) -> None:
    worker_port, reconciler_port = free_port(), free_port()
    with cluster(tmp_path, s3_endpoint, redis_db=3, SEGMENTER="fake",
                 WORKER_METRICS_PORT=str(worker_port),
                 RECONCILE_METRICS_PORT=str(reconciler_port)) as c:
        for i in range(4):
            c.put_image(f"m{i}.png", square((64, 64), (16, 16, 48, 48), (30, 160, 30)))
        jobs = [c.ledger.submit(JobSpec(bucket="photos", key=f"m{i}.png", model=TEST_MODEL)).job
                for i in range(4)]
        jobs.append(
            c.ledger.submit(JobSpec(bucket="photos", key="missing.png", model=TEST_MODEL)).job)
        c.start_worker(concurrency=2)  # two pool processes: their counts must add up
        c.start_reconciler()
        c.queue.publish([Dispatch(j.id) for j in jobs])
        wait_for(lambda: all(c.ledger.get(j.id).status in (JobStatus.SUCCEEDED, JobStatus.DEAD)
                             for j in jobs), 60, "every job to finish", c.logs)
        worker = f"http://127.0.0.1:{worker_port}/metrics"
        wait_for(lambda: 'outcome="succeeded"' in httpx.get(worker).text, 10, "the metrics")
        text = httpx.get(worker).text
        assert value(text, 'clipline_jobs_total{outcome="succeeded",reason=""}') == 4
        assert value(text, 'clipline_jobs_total{outcome="dead",reason="object_missing"}') == 1
        for stage in ("fetch", "decode", "infer", "compose", "encode", "put"):
            assert value(text, f'clipline_job_stage_seconds_count{{stage="{stage}"}}') == 4
        scrape = f"http://127.0.0.1:{reconciler_port}/metrics"
        depth = 'clipline_queue_depth{queue="bulk"}'
        wait_for(lambda: value(httpx.get(scrape).text, depth) == 0, 10,
                 "the reconciler to see the drained queue")  # it reads the depth every pass
        reconciler = httpx.get(scrape).text
        assert value(reconciler, 'clipline_queue_depth{queue="interactive"}') == 0
        assert "clipline_reconciler_published_total" in reconciler
