"""``clipline submit``, ``reconcile`` and ``worker`` as a user runs them: refusals included."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.jobs import JobStatus
from tests.distkit import CLIPLINE, Cluster, cluster

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def dist(tmp_path: Path, s3_endpoint: str) -> Iterator[Cluster]:
    with cluster(tmp_path, s3_endpoint, redis_db=11, SEGMENTER="fake") as made:
        yield made


def clipline(c: Cluster, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLIPLINE, *args], env={**c.env, **env}, capture_output=True,
                          text=True, timeout=60)


def test_submit_needs_exactly_one_source(dist: Cluster, tmp_path: Path) -> None:
    done = clipline(dist, "submit")
    assert done.returncode == 2 and "exactly one" in done.stderr
    (tmp_path / "m.txt").write_text("s3://photos/a.jpg\n")
    done = clipline(dist, "submit", "s3://photos/b.jpg", "--manifest", str(tmp_path / "m.txt"))
    assert done.returncode == 2 and "exactly one" in done.stderr


def test_a_bad_manifest_line_refuses_the_whole_manifest(dist: Cluster, tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"
    manifest.write_text("s3://photos/a.jpg\ns3://photos/b.jpg\nphotos/c.jpg\n")
    done = clipline(dist, "submit", "--manifest", str(manifest))
    assert done.returncode == 2
    assert "clipline: invalid_manifest: line 3: not an S3 object URL" in done.stderr
    assert dist.ledger.list_jobs() == []


def test_a_bad_url_argument_is_refused(dist: Cluster) -> None:
    done = clipline(dist, "submit", "photos/a.jpg")
    assert done.returncode == 2 and "not an S3 object URL" in done.stderr


def test_submit_by_prefix_takes_the_images_under_it(dist: Cluster) -> None:
    # A folder of this test's own: moto's buckets outlive a test, and others write to photos/.
    top = f"cli-{uuid.uuid4().hex[:8]}"
    for key in ("shoes/a.jpg", "shoes/b.png", "shoes/readme.txt", "bags/c.jpg"):
        dist.s3.put("photos", f"{top}/{key}", b"x", content_type="image/jpeg")
    done = clipline(dist, "submit", "--prefix", f"s3://photos/{top}/shoes/", "--priority", "7")
    assert done.returncode == 0, done.stderr
    assert "2 received, 2 new" in done.stdout and "2 message(s) sent" in done.stdout
    jobs = dist.ledger.list_jobs()
    assert sorted(j.key for j in jobs) == [f"{top}/shoes/a.jpg", f"{top}/shoes/b.png"]
    assert {j.priority for j in jobs} == {7}
    # priority 7 >= the interactive threshold: both messages went to the interactive queue
    assert dist.redis.llen("interactive") == 2 and dist.redis.llen("bulk") == 0


def test_submit_with_redis_down_records_the_jobs_and_reconcile_publishes_them(
    dist: Cluster,
) -> None:
    down = {"CLIPLINE_REDIS_URL": "redis://127.0.0.1:1/0"}
    done = clipline(dist, "submit", "s3://photos/a.jpg", "s3://photos/b.jpg", **down)
    assert done.returncode == 0, done.stderr
    assert "0 message(s) sent" in done.stdout
    assert "the jobs are recorded and `clipline reconcile` will publish them" in done.stderr
    assert len(dist.ledger.list_jobs(status=JobStatus.QUEUED)) == 2
    assert dist.queue.depth() == 0
    done = clipline(dist, "reconcile", "--once", CLIPLINE_RECONCILE_LOST_AFTER_SECONDS="0.01")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["published"] == 2
    assert dist.queue.depth() == 2


@pytest.mark.parametrize(("env", "message"), [
    ({"CLIPLINE_S3_OUTPUT_BUCKET": ""}, "CLIPLINE_S3_OUTPUT_BUCKET is not set"),
    ({"CLIPLINE_REDIS_URL": "redis://127.0.0.1:1/0"}, "broker_unavailable"),
    ({"CLIPLINE_TASK_TIME_LIMIT_SECONDS": "5000"},
     "broker_visibility_timeout_seconds must exceed"),
])
def test_the_worker_refuses_to_start_with_one_clear_line(
    dist: Cluster, env: dict[str, str], message: str
) -> None:
    done = clipline(dist, "worker", **env)
    assert done.returncode == 2, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("clipline: ") and message in last


def test_the_worker_starts_while_triton_is_down_and_says_so(dist: Cluster) -> None:
    # Under a supervisor, exiting would restart-loop it for the whole outage; its processes
    # hold work back until Triton answers (tests/integration/test_outages.py).
    dist.values.update(SEGMENTER="triton", TRITON_URL="127.0.0.1:1")
    dist.start_worker(concurrency=1)
    assert "inference_unavailable_at_start" in dist.log_text()


def test_a_metrics_port_in_use_is_one_line_and_exit_2(dist: Cluster) -> None:
    import socket

    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = taken.getsockname()[1]
        done = clipline(dist, "worker", CLIPLINE_WORKER_METRICS_PORT=str(port))
    assert done.returncode == 2, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("clipline: ") and f"CLIPLINE_WORKER_METRICS_PORT={port}" in last
    assert "Traceback" not in done.stderr


def test_the_worker_refuses_a_ledger_that_is_not_migrated(dist: Cluster) -> None:
    done = clipline(dist, "worker", CLIPLINE_DATABASE_URL=f"sqlite:///{dist.workdir}/empty.db")
    assert done.returncode == 2
    assert "run `clipline db upgrade`" in done.stderr


def test_submit_with_a_key_template_records_each_jobs_key(dist: Cluster, tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"
    manifest.write_text("s3://photos/2026/shoes/SKU 1.jpg\ns3://photos/top.png\n")
    done = clipline(dist, "submit", "--manifest", str(manifest), "--tenant", "acme",
                    "--key-template", "{prefix}/{key_dir}/{key_stem}.{ext}",
                    "--output-bucket", "catalog", "--format", "webp")
    assert done.returncode == 0, done.stderr
    assert sorted((j.output_bucket, j.output_key) for j in dist.ledger.list_jobs()) == [
        ("catalog", "cutouts/acme/2026/shoes/SKU 1.webp"), ("catalog", "cutouts/acme/top.webp")]


def test_submit_refuses_a_manifest_whose_keys_collide(dist: Cluster, tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"
    manifest.write_text("s3://photos/a/SKU1.jpg\ns3://photos/a/SKU1.png\n")
    done = clipline(dist, "submit", "--manifest", str(manifest),
                    "--key-template", "{prefix}/{key_dir}/{key_stem}.{ext}")
    assert done.returncode == 2
    assert "output_key_collision: items 1 and 2" in done.stderr
    assert dist.ledger.list_jobs() == []
    bad = clipline(dist, "submit", "s3://photos/a.jpg", "--key-template", "{sku}.png")
    assert bad.returncode == 2 and "invalid_output" in bad.stderr
