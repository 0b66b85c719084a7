"""Output destinations in every ledger: the resolved bucket and key are stored with the job,
come back on every read and claim, and are part of what makes two submissions the same job."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.errors import DestinationCollision, IdempotencyConflict
from pipeline.jobs import JobSpec
from pipeline.output_keys import Destination, Placer

Ledger = Any  # SqlLedger | MemoryLedger
MIRROR = "{prefix}/{key_dir}/{key_stem}.{ext}"


def placed(key: str, template: str = MIRROR, bucket: str | None = None, **kw: Any) -> JobSpec:
    destination = Destination.of(bucket, template)
    assert destination is not None
    spec = JobSpec(bucket="photos", key=key, options={"format": "png"}, **kw)
    return Placer(destination, "default", tenant=None).place(spec)


def test_a_destination_is_stored_and_comes_back_on_read_and_claim(ledger: Ledger) -> None:
    job = ledger.submit(placed("2026/shoes/SKU 1%.jpg", bucket="catalog")).job
    assert (job.output_bucket, job.output_key) == (
        "catalog", "cutouts/default/2026/shoes/SKU 1%.png")
    assert ledger.get(job.id).output_key == job.output_key
    claim = ledger.claim(job.id, worker="w")
    assert claim is not None
    assert (claim.job.output_bucket, claim.job.output_key) == (job.output_bucket, job.output_key)


def test_a_job_without_destination_has_none(ledger: Ledger) -> None:
    job = ledger.submit(JobSpec(bucket="photos", key="a.jpg")).job
    assert (job.output_bucket, job.output_key) == (None, None)


def test_the_same_source_sent_to_two_places_is_two_jobs(ledger: Ledger) -> None:
    first = ledger.submit(placed("a/b.jpg")).job
    again = ledger.submit(placed("a/b.jpg"))
    other = ledger.submit(placed("a/b.jpg", "{prefix}/flat/{key_name}.{ext}"))
    plain = ledger.submit(JobSpec(bucket="photos", key="a/b.jpg", options={"format": "png"}))
    assert not again.created and again.job.id == first.id
    assert other.created and plain.created
    assert len({first.id, other.job.id, plain.job.id}) == 3


def test_an_explicit_key_reused_with_another_destination_names_it(ledger: Ledger) -> None:
    ledger.submit(placed("a.jpg", idempotency_key="sku-1"))
    with pytest.raises(IdempotencyConflict) as caught:
        ledger.submit(placed("a.jpg", "{prefix}/x/{key}", idempotency_key="sku-1"))
    assert caught.value.fields == ["output.key"]


def test_a_bulk_insert_stores_every_destination(ledger: Ledger) -> None:
    specs = [placed(f"d{i}/k{i}.jpg") for i in range(3)] + [placed("d0/k0.jpg")]
    result = ledger.submit_many(specs, batch_id=ledger.create_batch())
    assert (result.received, result.inserted) == (4, 3)
    keys = sorted(j.output_key for j in ledger.list_jobs(batch_id=result.batch_id))
    assert keys == [f"cutouts/default/d{i}/k{i}.png" for i in range(3)]


def test_a_collision_in_a_bulk_insert_records_nothing(ledger: Ledger) -> None:
    place = Placer(Destination.of(None, MIRROR), "default", tenant=None)  # type: ignore[arg-type]
    specs = (JobSpec(bucket="photos", key=k) for k in ("x/a.jpg", "x/b.jpg", "x/a.png"))
    with pytest.raises(DestinationCollision):
        ledger.submit_many(place.place_all(specs), batch_id=ledger.create_batch())
    assert ledger.list_jobs() == []
