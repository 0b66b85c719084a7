"""Bulk intake: a manifest of N lines in S3 → one batch, through the HTTP API.

    python -m bench.intake --lines 1000000 [--until queued] [--redis-db 6]

The manifest (one S3 URL per line) is put on moto's S3 server; ``POST /v1/batches`` names it,
and the batch is polled until every job is recorded and queued (state ``publishing``), then
until every wake-up message is sent (state ``ready``). The goal (issue 5) is a 1,000,000-line
manifest queued in 20 s on this machine. Real services: the machine's PostgreSQL (a throw-away
database), Redis (database 6 unless ``--redis-db`` says otherwise; flushed at the start and the
end), moto, and the API served by uvicorn on loopback.

Before the API run, the same run measures the physical limit on the same database: the
manifest's lines, parsed as the API parses them, COPYed in one stream into an unindexed twin of
``jobs`` (``bench.ledger.raw_copy``). It prints both rates and the ratio, bulk submit (every job
recorded and queued, through the API) ÷ raw COPY.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
from sqlalchemy import Engine, text

from bench.ledger import checkpoint, copy_rows, print_ratio, raw_copy, render_seconds
from clipline.cli.api import api_app
from pipeline.adapters.ledger.tenants import TenantStore
from pipeline.intake import manifest_lines, specs_of
from pipeline.jobs import JobSpec
from pipeline.options import OutputOptions
from tests.distkit import cluster, serve
from tests.tritonkit import free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--until", choices=("queued", "ready"), default="ready",
                        help="stop once every job is queued, or once every message is sent")
    parser.add_argument("--redis-db", type=int, default=6,
                        help="Redis database number, flushed at the start and the end")
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    manifest = "".join(f"s3://photos/catalog/{i:08d}.jpg\n" for i in range(args.lines)).encode()
    try:
        with tempfile.TemporaryDirectory(prefix="clipline-intake-") as tmp, \
                cluster(Path(tmp), f"http://127.0.0.1:{port}", redis_db=args.redis_db,
                        API_MAX_MANIFEST_BYTES=str(len(manifest) + 1)) as c, \
                serve(api_app(c.settings)) as url:
            c.s3.put("photos", "manifests/tonight.txt", manifest, content_type="text/plain")
            tenants = TenantStore(c.ledger.engine)
            tenants.save("acme", allowed_sources=["photos/"])
            _, key = tenants.create_key("acme")
            # The API's defaults for a request that gives none (bench.intake posts none).
            options, model = OutputOptions.parse({}).normalised(), c.settings.model
            defaults = {"options": options, "priority": 0, "model": model}

            def parsed() -> Iterator[JobSpec]:
                return specs_of("manifests/tonight.txt", manifest_lines(io.BytesIO(manifest)),
                                defaults)

            # One stored job of tenant acme lends the twin the constant columns' values; it
            # is a batch of its own, outside the one measured.
            seed = c.ledger.create_batch("acme", label="raw copy seed")
            c.ledger.submit_many([JobSpec("photos", "seed.jpg", options=options, model=model)],
                                 tenant="acme", batch_id=seed)
            raw_rows, raw_s = raw_copy(c.ledger.engine, parsed(), seed)
            render_s = render_seconds(parsed())
            checkpoint(c.ledger.engine)
            with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as api:
                start = time.perf_counter()
                batch = api.post("/v1/batches", json={
                    "manifest": {"bucket": "photos", "key": "manifests/tonight.txt"}}).json()
                answered = time.perf_counter() - start
                queued = ready = None
                deadline = start + max(120.0, args.lines / 1000)
                while ready is None:
                    view = api.get(f"/v1/batches/{batch['id']}").json()
                    if view["state"] == "failed":
                        raise SystemExit(f"the batch failed: {view['expansion']}")
                    if time.perf_counter() > deadline:
                        raise SystemExit(f"the batch is still {view['state']} after "
                                         f"{deadline - start:.0f} s")
                    if view["state"] in ("publishing", "ready") and queued is None:
                        queued = time.perf_counter() - start
                    if view["state"] == "ready" or (queued and args.until == "queued"):
                        ready = time.perf_counter() - start
                    time.sleep(0.2)
            counts = c.ledger.batch_counts(batch["id"])
            depth = c.queue.depth()
            same_rows = _same_rows(c.ledger.engine, uuid.UUID(batch["id"]), parsed())
    finally:
        moto.stop()
    assert queued is not None
    if counts.total != args.lines:
        raise SystemExit(f"{counts.total:,} of {args.lines:,} lines became jobs")
    by_status = ", ".join(f"{status.value} {n:,}" for status, n in counts.by_status.items())
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at the end")
    print(f"manifest: {args.lines:,} lines, {len(manifest) / 1e6:.1f} MB in S3")
    print(f"POST /v1/batches answered in {answered * 1000:.0f} ms (202, state expanding)")
    print(f"every job recorded and queued: {queued:.1f} s = {args.lines / queued:,.0f} lines/s "
          f"(in the ledger: {by_status})")
    if args.until == "ready":
        print(f"every message published: {ready:.1f} s ({depth:,} messages in Redis)")
    else:
        print(f"stopped once queued; {depth:,} messages published by then")
    assert raw_rows == args.lines, (raw_rows, args.lines)
    print(f"bulk submit:      {args.lines:>9,} lines in {queued:6.2f} s = "
          f"{args.lines / queued:>9,.0f} lines/s (POST to every job queued)")
    print_ratio("bulk submit", args.lines, queued, raw_s, render_s)
    print(f"  (raw COPY rows parsed from the same manifest bytes; first line's stored job "
          f"matches the raw row: {same_rows})")



def _same_rows(engine: Engine, batch_id: uuid.UUID, specs: Iterable[JobSpec]) -> str:
    """Whether the first manifest line's stored job has the bucket, key, options, model and
    idempotency key of the row the raw COPY wrote for it."""
    _, bucket, key, _, options, model, dedupe, *_ = next(iter(copy_rows(specs)))
    with engine.connect() as conn:
        stored = conn.execute(text(
            "SELECT source_bucket, source_key, options, model, idempotency_key FROM jobs"
            " WHERE batch_id = :b AND source_key = :k"), {"b": batch_id, "k": key}).one()
    raw = (bucket, key, json.loads(options), model, dedupe)
    return "yes" if tuple(stored) == raw else f"NO: {tuple(stored)} != {raw}"

if __name__ == "__main__":
    main()
