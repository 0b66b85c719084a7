"""End to end: images/s through S3 + Celery + Triton, against the same model in process.

    python -m bench.end_to_end --count 60 --processes 2 [--pool threads] [--redis-db 10]

Distributed: the images are uploaded to moto's S3 server, submitted as one batch, published on
Redis and cut out by a real ``clipline worker`` (``--pool``: prefork with ``--processes``
processes, or threads: that many threads in one process) that sends u2netp's
uint8 graph requests to a Triton server (pytriton's, ONNX Runtime on the CPU, dynamic batching)
and writes the cut-outs back to S3. The rate is images over the time from the first claim to the
last completion (ledger events). The per-stage split is the mean of the jobs' own timings; the
``ledger + overhead`` share is what remains of each job's claim→completion time.

In process: the same images, already in memory, through ``pipeline.process.cut_out`` with the
same u2netp uint8 graph on ONNX Runtime in this process (all cores), one after another.

On one small machine both shapes share the same cores with PostgreSQL, Redis, moto and Triton;
the figure says what the distributed path costs, not what a GPU cluster does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from moto.server import ThreadedMotoServer
from sqlalchemy import select

from pipeline.adapters.ledger.schema import job_events
from pipeline.adapters.segmenters.onnx_runtime import OnnxSegmenter
from pipeline.jobs import Dispatch, JobSpec, JobStatus
from pipeline.model_fetch import pull
from pipeline.models import U2NETP, uint8_form
from pipeline.options import OutputOptions
from pipeline.process import STAGES, cut_out
from pipeline.triton_launch import uint8_graph
from tests.distkit import cluster
from tests.modelkit import TEST_MODEL
from tests.tritonkit import TritonServer, free_port

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "products"
MODELS = Path(__file__).resolve().parents[1] / ".cache" / "models"


def load_images(folder: Path, count: int) -> list[tuple[str, bytes]]:
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})[:count]
    if not files:
        raise SystemExit(f"no images in {folder}")
    return [(p.name, p.read_bytes()) for p in files]


def in_process(images: list[tuple[str, bytes]], model_file: Path) -> float:
    segmenter = OnnxSegmenter(model_file, uint8_form(U2NETP), allow_spinning=False)
    options = OutputOptions.parse({})
    cut_out(images[0][1], options, segmenter, model="u2netp")  # warm-up
    start = time.perf_counter()
    for _, data in images:
        cut_out(data, options, segmenter, model="u2netp")
    return len(images) / (time.perf_counter() - start)


def distributed(images: list[tuple[str, bytes]], model_file: Path, concurrency: int,
                pool: str, work: Path, redis_db: int) -> tuple[float, dict[str, float]]:
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    triton = TritonServer(model_file, log_dir=work, threads=os.cpu_count() or 1)
    try:
        triton.start()
        with cluster(work, f"http://127.0.0.1:{port}", redis_db=redis_db, SEGMENTER="triton",
                     TRITON_URL=triton.url, LOG_LEVEL="WARNING", LEASE_SECONDS="120",
                     HEARTBEAT_SECONDS="30") as c:
            for name, data in images:
                c.put_image(name, data)
            c.start_worker(concurrency=concurrency, pool=pool)
            batch = c.ledger.create_batch(label="end-to-end bench")
            c.ledger.submit_many(
                (JobSpec(bucket="photos", key=n, model=TEST_MODEL) for n, _ in images),
                batch_id=batch)
            jobs = c.ledger.list_jobs(batch_id=batch, limit=len(images))
            c.queue.publish([Dispatch(j.id, j.priority) for j in jobs])
            counts = c.wait_batch(batch, timeout=600)
            if counts[JobStatus.SUCCEEDED] != len(images):
                raise SystemExit(f"not every job succeeded: {counts}\n{c.logs()}")
            return _rates(c, batch, len(images))
    finally:
        triton.stop()
        moto.stop()


def _rates(c: object, batch: object, count: int) -> tuple[float, dict[str, float]]:
    ledger = c.ledger  # type: ignore[attr-defined]
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(job_events.c.job_id, job_events.c.action,
                                   job_events.c.at)).all()
    moments: dict[object, dict[str, object]] = defaultdict(dict)
    for job_id, action, at in rows:
        moments[job_id][action] = at
    first = min(m["claimed"] for m in moments.values())  # type: ignore[type-var]
    last = max(m["completed"] for m in moments.values())  # type: ignore[type-var]
    split: dict[str, list[float]] = defaultdict(list)
    for job in ledger.list_jobs(batch_id=batch, limit=count):
        timings = job.result["timings_ms"]
        for stage in STAGES:
            split[stage].append(timings.get(stage, 0.0))
        held = (moments[job.id]["completed"] - moments[job.id]["claimed"])  # type: ignore[operator]
        split["ledger + overhead"].append(held.total_seconds() * 1000 - sum(timings.values()))
    rate = count / (last - first).total_seconds()  # type: ignore[operator]
    return rate, {k: statistics.fmean(v) for k, v in split.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="the worker's --concurrency: pool processes (prefork), or threads "
                             "in one process (threads)")
    parser.add_argument("--pool", choices=("prefork", "threads"), default="prefork",
                        help="the worker's Celery pool: prefork runs one job per process at a "
                             "time; threads runs --processes jobs at once in one process, so "
                             "one job's S3 and image work overlaps another's Triton request")
    parser.add_argument("--redis-db", type=int, default=10,
                        help="Redis database number, flushed at the start and the end")
    args = parser.parse_args()
    images = load_images(args.images, args.count)
    pull(U2NETP, MODELS)
    model_file = uint8_graph(U2NETP, MODELS)

    local = in_process(images, model_file)
    with tempfile.TemporaryDirectory(prefix="clipline-end-to-end-") as tmp:
        remote, split = distributed(images, model_file, args.processes, args.pool,
                                    Path(tmp), args.redis_db)
    print(f"machine: {os.cpu_count()} CPUs; {len(images)} images from {args.images}")
    print(f"in process (cut_out, ONNX Runtime, {os.cpu_count()} threads): {local:.2f} img/s")
    plural = "" if args.processes == 1 else "es"
    shape = (f"{args.processes} process{plural}" if args.pool == "prefork"
             else f"1 process, {args.processes} threads")
    print(f"distributed (S3 + Celery {args.pool}, {shape} + Triton): {remote:.2f} img/s")
    print(f"ratio distributed / in process: {remote / local:.2f}")
    total = sum(split.values())
    print("mean time per job, by stage (ms, share):")
    for stage, ms in split.items():
        print(f"  {stage:<18} {ms:8.1f}  {ms / total:6.1%}")


if __name__ == "__main__":
    main()
