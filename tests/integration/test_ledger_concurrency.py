"""Many threads and several processes against the real databases: one holder per job, always."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.adapters.ledger.database import make_engine
from pipeline.adapters.ledger.sql import SqlLedger
from pipeline.jobs import LEASE_EXPIRED, JobSpec, JobStatus
from pipeline.retry import Backoff


def _ledger(url: str, **kw: object) -> SqlLedger:
    return SqlLedger(make_engine(url, pool_size=10), **kw)  # type: ignore[arg-type]


def test_threads_claiming_never_share_a_job(ledger_url: str) -> None:
    ledger = _ledger(ledger_url)
    ledger.submit_many([JobSpec("b", f"{i}.jpg") for i in range(300)])

    def drain(n: int) -> list[uuid.UUID]:
        got = []
        while claims := ledger.claim_next(3, worker=f"t{n}"):
            for c in claims:
                ledger.complete(c.job.id, c.token, {"by": n})
                got.append(c.job.id)
        return got

    with ThreadPoolExecutor(8) as pool:
        taken = [j for batch in pool.map(drain, range(8)) for j in batch]
    assert len(taken) == 300
    assert len(set(taken)) == 300
    ledger.close()


def test_threads_racing_for_one_job_by_id(ledger_url: str) -> None:
    ledger = _ledger(ledger_url)
    job = ledger.submit(JobSpec("b", "one.jpg")).job
    with ThreadPoolExecutor(16) as pool:
        claims = list(pool.map(lambda n: ledger.claim(job.id, worker=f"t{n}"), range(16)))
    assert sum(c is not None for c in claims) == 1
    assert ledger.get(job.id).attempts == 1
    ledger.close()


def _claim_in_process(url: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    ledger = _ledger(url)
    got = []
    while claims := ledger.claim_next(4, worker=f"p{os.getpid()}"):
        for c in claims:
            ledger.complete(c.job.id, c.token, {"pid": os.getpid()})
            got.append(str(c.job.id))
    out.put(got)
    ledger.close()


def test_processes_claiming_never_share_a_job(ledger_url: str) -> None:
    ledger = _ledger(ledger_url)
    ledger.submit_many([JobSpec("b", f"{i}.jpg") for i in range(400)])
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process, args=(ledger_url, out)) for _ in range(4)]
    for p in procs:
        p.start()
    taken = [j for _ in procs for j in out.get(timeout=90)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(taken) == 400 == len(set(taken))
    events = Counter(e.action for j in taken[:50] for e in ledger.events(uuid.UUID(j)))
    assert events == {"claimed": 50, "completed": 50}
    ledger.close()


def test_fifty_threads_submitting_one_key_make_one_job(ledger_url: str) -> None:
    ledger = _ledger(ledger_url)
    spec = JobSpec("b", "same.jpg", options={"format": "png"}, idempotency_key="client-key-1")
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: ledger.submit(spec), range(50)))
    assert len({r.job.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    ledger.close()


def _claim_then_die(url: str, job_id: str) -> None:
    ledger = _ledger(url, lease_seconds=0.3)
    claim = ledger.claim(uuid.UUID(job_id), worker=f"doomed-{os.getpid()}")
    assert claim is not None
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
def test_job_whose_worker_processes_die_reaches_dead(ledger_url: str) -> None:
    ledger = _ledger(ledger_url, lease_seconds=0.3, max_attempts=3, backoff=Backoff(0.05, 0.2))
    job = ledger.submit(JobSpec("b", "bomb.jpg")).job
    ctx = mp.get_context("spawn")
    for attempt in (1, 2, 3):
        proc = ctx.Process(target=_claim_then_die, args=(ledger_url, str(job.id)))
        proc.start()
        proc.join(60)
        assert proc.exitcode == -signal.SIGKILL
        assert ledger.get(job.id).attempts == attempt
        time.sleep(0.35)  # the lease runs out
        reaped = ledger.reap()
        assert (reaped.requeued, reaped.dead) == ((1, 0) if attempt < 3 else (0, 1))
        if attempt < 3:
            _wait_due(ledger, job.id)
    dead = ledger.get(job.id)
    assert (dead.status, dead.attempts, dead.last_error_code) == (JobStatus.DEAD, 3, LEASE_EXPIRED)
    ledger.close()


def _wait_due(ledger: SqlLedger, job_id: uuid.UUID) -> None:
    """Reaping applies the retry backoff; wait until the job may be claimed again."""
    job = ledger.get(job_id)
    delay = (job.not_before - ledger.clock.now()).total_seconds()
    time.sleep(max(0.0, delay) + 0.01)
