"""Batch reports on the SQL ledger (SQLite and PostgreSQL): due once a batch has finished,
written once, due again after a redrive, rewritten at the same keys when it finishes again."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from pipeline.adapters.ledger.sql import SqlLedger
from pipeline.batch_report import COLUMNS, report_keys, write_due_reports
from pipeline.batches import EXPANDING, READY
from pipeline.errors import NotAnImage
from pipeline.jobs import JobSpec

RESULT = {"output": {"bucket": "out", "key": "cutouts/default/a.png"}, "bbox": [1, 2, 30, 40],
          "foreground_fraction": 0.25, "uncertainty": 0.01, "timings_ms": {"infer": 3.5}}


class Store:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.puts = 0

    def put(self, bucket: str, key: str, data: bytes, *, content_type: str,
            metadata: Mapping[str, str] | None = None) -> None:
        self.objects[(bucket, key)] = data
        self.puts += 1


def batch_of_three(ledger: SqlLedger) -> Any:
    batch_id = ledger.create_batch(meta={"state": READY})
    specs = [JobSpec(bucket="photos", key=k) for k in ("a.jpg", "b, \"q\".jpg", "é 100%.jpg")]
    ledger.submit_many(specs, batch_id=batch_id)
    return batch_id


def finish(ledger: SqlLedger, batch_id: Any, *, fail: str | None = None) -> None:
    for claim in ledger.claim_next(10, worker="w", batch_id=batch_id):
        if claim.job.key == fail:
            ledger.fail(claim.job.id, claim.token, NotAnImage("text, not an image"))
        else:
            ledger.complete(claim.job.id, claim.token, RESULT)


def rows(store: Store, batch_id: Any) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    keys = report_keys("cutouts", "default", batch_id)
    lines = store.objects[("out", keys["jsonl"])].decode().splitlines()
    table = list(csv.DictReader(io.StringIO(store.objects[("out", keys["csv"])].decode())))
    return [json.loads(line) for line in lines], table


def test_a_finished_batch_gets_one_report_in_both_formats(sql_ledger: SqlLedger) -> None:
    store = Store()
    batch_id = batch_of_three(sql_ledger)
    assert sql_ledger.batches_to_report(10) == []  # nothing has finished
    finish(sql_ledger, batch_id, fail="b, \"q\".jpg")
    assert sql_ledger.batches_to_report(10) == [(batch_id, "default")]
    assert write_due_reports(sql_ledger, store, bucket="out") == 1
    assert write_due_reports(sql_ledger, store, bucket="out") == 0  # written once
    found, table = rows(store, batch_id)
    lines = sorted(found, key=lambda r: r["source_key"])  # listing order: by insert, then id
    table.sort(key=lambda r: r["source_key"])
    assert [r["source_key"] for r in lines] == ["a.jpg", "b, \"q\".jpg", "é 100%.jpg"]
    assert [r["status"] for r in lines] == ["succeeded", "dead", "succeeded"]
    assert lines[0]["bbox"] == [1, 2, 30, 40] and lines[0]["foreground_fraction"] == 0.25
    assert lines[0]["output_key"] == "cutouts/default/a.png"
    assert (lines[1]["reason"], lines[1]["message"]) == ("not_an_image", "text, not an image")
    assert lines[1]["output_key"] is None
    assert list(table[0]) == list(COLUMNS)
    assert [r["source_key"] for r in table] == [r["source_key"] for r in lines]
    assert table[0]["bbox"] == "[1,2,30,40]" and table[1]["output_key"] == ""
    assert table[0]["timings_ms"] == '{"infer":3.5}'
    meta = sql_ledger.get_batch(batch_id)["meta"]
    assert meta["state"] == READY
    assert meta["report"]["counts"] == {"succeeded": 2, "dead": 1}
    assert meta["report"]["jsonl"].endswith(f"/batches/{batch_id}/report.jsonl")


def test_a_redrive_makes_the_report_due_again_once_the_batch_finishes(
        sql_ledger: SqlLedger) -> None:
    store = Store()
    batch_id = batch_of_three(sql_ledger)
    finish(sql_ledger, batch_id, fail="a.jpg")
    write_due_reports(sql_ledger, store, bucket="out")
    assert sql_ledger.redrive(batch_id=batch_id) == 1
    assert sql_ledger.batches_to_report(10) == []  # the redriven job is queued
    finish(sql_ledger, batch_id)
    assert write_due_reports(sql_ledger, store, bucket="out") == 1
    lines, _ = rows(store, batch_id)
    assert [r["status"] for r in lines] == ["succeeded"] * 3  # rewritten, same keys
    assert len(store.objects) == 2 and store.puts == 4


def test_a_batch_still_expanding_or_without_jobs_is_not_reported(sql_ledger: SqlLedger) -> None:
    expanding = sql_ledger.create_batch(meta={"state": EXPANDING})
    sql_ledger.submit_many([JobSpec(bucket="photos", key="x.jpg")], batch_id=expanding)
    finish(sql_ledger, expanding)
    sql_ledger.create_batch(meta={"state": READY})  # no job at all
    assert sql_ledger.batches_to_report(10) == []
    sql_ledger.set_batch_meta(expanding, {"state": READY})
    assert sql_ledger.batches_to_report(10) == [(expanding, "default")]


def test_a_report_is_not_marked_when_a_job_went_back_meanwhile(sql_ledger: SqlLedger) -> None:
    batch_id = batch_of_three(sql_ledger)
    finish(sql_ledger, batch_id, fail="a.jpg")
    sql_ledger.redrive(batch_id=batch_id)  # between listing the jobs and marking
    assert not sql_ledger.mark_reported(batch_id, {"bucket": "out"})
    assert sql_ledger.get_batch(batch_id)["reported_at"] is None


def test_jobs_added_to_a_reported_batch_make_it_due_again(sql_ledger: SqlLedger) -> None:
    store = Store()
    batch_id = batch_of_three(sql_ledger)
    finish(sql_ledger, batch_id)
    write_due_reports(sql_ledger, store, bucket="out")
    sql_ledger.submit_many([JobSpec(bucket="photos", key="late.jpg")], batch_id=batch_id)
    sql_ledger.report_due(batch_id)
    finish(sql_ledger, batch_id)
    assert write_due_reports(sql_ledger, store, bucket="out") == 1
    assert len(rows(store, batch_id)[0]) == 4


class Sender:
    def __init__(self, answers: list[str | None]) -> None:
        self.answers, self.sent = answers, []  # type: ignore[var-annotated]

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> str | None:
        self.sent.append((url, json.loads(body), headers))
        return self.answers.pop(0) if self.answers else None


def test_the_batch_callback_announces_each_report_signed(sql_ledger: SqlLedger) -> None:
    from pipeline.batch_callbacks import deliver_due_batches
    from pipeline.callbacks import HEADER, verify
    from pipeline.retry import Backoff

    store, sender, backoff = Store(), Sender(["503 Service Unavailable"]), Backoff(0.0, 0.0)
    batch_id = batch_of_three(sql_ledger)
    sql_ledger.set_batch_callback(batch_id, "https://example.com/hooks/batch")
    finish(sql_ledger, batch_id, fail="a.jpg")

    def deliver() -> Any:
        return deliver_due_batches(sql_ledger, sender, lambda _: "s3cret", backoff=backoff)

    assert vars(deliver()) == {"delivered": 0, "retrying": 0, "failed": 0}  # no report yet
    write_due_reports(sql_ledger, store, bucket="out")
    assert vars(deliver()) == {"delivered": 0, "retrying": 1, "failed": 0}  # the 503
    assert vars(deliver()) == {"delivered": 1, "retrying": 0, "failed": 0}
    assert vars(deliver()) == {"delivered": 0, "retrying": 0, "failed": 0}  # once
    url, body, headers = sender.sent[-1]
    assert url == "https://example.com/hooks/batch"
    assert body["type"] == "batch.reported" and body["batch_id"] == str(batch_id)
    assert body["report"]["counts"] == {"succeeded": 2, "dead": 1}
    assert body["report"]["csv"]["key"].endswith(f"/batches/{batch_id}/report.csv")
    raw = json.dumps(body, separators=(",", ":")).encode()
    assert verify("s3cret", headers[HEADER], raw)
    # A redrive finishes it again: rewritten, announced again.
    sql_ledger.redrive(batch_id=batch_id)
    finish(sql_ledger, batch_id)
    write_due_reports(sql_ledger, store, bucket="out")
    assert vars(deliver()) == {"delivered": 1, "retrying": 0, "failed": 0}
    assert sender.sent[-1][1]["report"]["counts"] == {"succeeded": 3}


def test_a_batch_without_callback_announces_nothing(sql_ledger: SqlLedger) -> None:
    from pipeline.batch_callbacks import deliver_due_batches
    from pipeline.retry import Backoff

    batch_id = batch_of_three(sql_ledger)
    finish(sql_ledger, batch_id)
    write_due_reports(sql_ledger, Store(), bucket="out")
    sender = Sender([])
    deliver_due_batches(sql_ledger, sender, lambda _: "s", backoff=Backoff(0.0, 0.0))
    assert sender.sent == []


def test_a_job_without_a_cut_out_reports_the_destination_it_was_given(
    sql_ledger: SqlLedger,
) -> None:
    store = Store()
    batch_id = sql_ledger.create_batch(meta={"state": READY})
    sql_ledger.submit_many([JobSpec(bucket="photos", key="sku1.jpg", output_bucket="catalog",
                                    output_key="cut/sku1.png"),
                            JobSpec(bucket="photos", key="sku2.jpg")], batch_id=batch_id)
    finish(sql_ledger, batch_id, fail="sku1.jpg")
    assert write_due_reports(sql_ledger, store, bucket="out") == 1
    found = {r["source_key"]: r for r in rows(store, batch_id)[0]}
    dead = found["sku1.jpg"]  # no cut-out, but the report says where it was to go
    assert (dead["status"], dead["output_bucket"], dead["output_key"]) == (
        "dead", "catalog", "cut/sku1.png")
    assert found["sku2.jpg"]["output_key"] == "cutouts/default/a.png"  # what it wrote (RESULT)
