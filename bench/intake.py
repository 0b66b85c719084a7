"""Bulk intake: a manifest of N lines in S3 → one batch, through the HTTP API.

    python -m bench.intake --lines 1000000 [--until queued] [--redis-db 6]

The manifest (one S3 URL per line) is put on moto's S3 server; ``POST /v1/batches`` names it,
and the batch is polled until every job is recorded and queued (state ``publishing``), then
until every wake-up message is sent (state ``ready``). The goal (issue 5) is a 1,000,000-line
manifest queued in 20 s on this machine. Real services: the machine's PostgreSQL (a throw-away
database), Redis (database 6 unless ``--redis-db`` says otherwise; flushed at the start and the
end), moto, and the API served by uvicorn on loopback.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import httpx

from clipline.cli.api import api_app
from pipeline.adapters.ledger.tenants import TenantStore
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


if __name__ == "__main__":
    main()
