"""The API's `model`: absent → the default, a served one → that one, another → 422
``model_not_served`` naming the served ones. Driven as ASGI (``tests.unit.test_api_door``'s
``call``) against the in-memory ledger, and SQLite where a route needs batches."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from pipeline.adapters.ledger.database import make_engine
from pipeline.adapters.ledger.memory import MemoryLedger
from pipeline.adapters.ledger.sql import SqlLedger
from pipeline.adapters.queue.memory import MemoryQueue
from pipeline.adapters.storage.memory import MemoryStore
from pipeline.api.app import create_app
from pipeline.api.deps import ApiDeps
from pipeline.settings import Settings
from tests.unit.test_api_door import Tenants, assert_problem, call, keyed

SERVED = {"model": "u2net", "served_models": "u2net,u2netp"}


def app_of(ledger: Any, store: MemoryStore | None = None) -> FastAPI:
    return create_app(ApiDeps(settings=Settings(**SERVED), ledger=ledger, tenants=Tenants(),  # type: ignore[arg-type]
                              queue=MemoryQueue(), store=store))  # type: ignore[arg-type]


def post(app: FastAPI, path: str, body: dict[str, Any]) -> Any:
    return call(app, "POST", path, [json.dumps(body).encode()], keyed())


def job(**more: Any) -> dict[str, Any]:
    return {"source": {"bucket": "photos", "key": "a.png"}, **more}


def test_a_job_without_a_model_gets_the_default() -> None:
    ledger = MemoryLedger()
    answer = post(app_of(ledger), "/v1/jobs", job())
    assert answer.status == 202, answer.body
    assert answer.json()["model"] == "u2net"
    assert [j.model for j in ledger.list_jobs()] == ["u2net"]


def test_a_job_may_choose_another_served_model() -> None:
    ledger = MemoryLedger()
    app = app_of(ledger)
    answer = post(app, "/v1/jobs", job(model="u2netp"))
    assert answer.status == 202, answer.body
    assert answer.json()["model"] == "u2netp"
    # The same source with the other model is another cut-out: another job.
    assert post(app, "/v1/jobs", job()).status == 202
    assert sorted(j.model for j in ledger.list_jobs()) == ["u2net", "u2netp"]


@pytest.mark.parametrize("model", ["isnet-general-use", "no-such-model"])
def test_a_model_not_served_is_422_naming_the_served_ones_and_records_nothing(
    model: str,
) -> None:
    ledger = MemoryLedger()
    problem = assert_problem(post(app_of(ledger), "/v1/jobs", job(model=model)), 422,
                             "model_not_served")
    assert problem["served"] == ["u2net", "u2netp"]
    assert problem["detail"] == f"model {model!r} is not served here; served: u2net, u2netp"
    assert ledger.list_jobs() == []


def test_a_model_name_that_cannot_be_one_is_an_invalid_request() -> None:
    answer = post(app_of(MemoryLedger()), "/v1/jobs", job(model="u2net/../x"))
    assert_problem(answer, 422, "invalid_request")


def test_the_openapi_contract_describes_the_model() -> None:
    spec = call(app_of(MemoryLedger()), "GET", "/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name in ("JobRequest", "BatchRequest", "BatchItem"):
        assert "model" in schemas[name]["properties"], name
    assert "model" in schemas["JobView"]["required"]


# -- batches (SQLite: the in-memory ledger keeps no batches) -------------------------------------


@pytest.fixture
def sqlite_ledger(sqlite_template: Path, tmp_path: Path) -> Iterator[SqlLedger]:
    path = tmp_path / "ledger.sqlite3"
    shutil.copy(sqlite_template, path)
    ledger = SqlLedger(make_engine(f"sqlite:///{path}"))
    ledger.ensure_tenant("acme")
    yield ledger
    ledger.close()


def test_a_batch_gives_its_model_to_every_item_that_names_none(sqlite_ledger: SqlLedger) -> None:
    items = [{"bucket": "photos", "key": "a.png"},
             {"bucket": "photos", "key": "b.png", "model": "u2net"}]
    answer = post(app_of(sqlite_ledger), "/v1/batches", {"items": items, "model": "u2netp"})
    assert answer.status == 202, answer.body
    jobs = sqlite_ledger.list_jobs()
    assert sorted((j.key, j.model) for j in jobs) == [("a.png", "u2netp"), ("b.png", "u2net")]


@pytest.mark.parametrize("body", [
    {"items": [{"bucket": "photos", "key": "a.png"}], "model": "isnet-general-use"},
    {"items": [{"bucket": "photos", "key": "a.png", "model": "isnet-general-use"}]},
], ids=["batch-model", "item-model"])
def test_a_batch_naming_a_model_not_served_is_422_before_anything_is_recorded(
    sqlite_ledger: SqlLedger, body: dict[str, Any]
) -> None:
    problem = assert_problem(post(app_of(sqlite_ledger), "/v1/batches", body), 422,
                             "model_not_served")
    assert problem["served"] == ["u2net", "u2netp"]
    assert sqlite_ledger.list_jobs() == []


def test_a_manifest_line_naming_a_model_not_served_fails_the_batch(
    sqlite_ledger: SqlLedger,
) -> None:
    store = MemoryStore()
    lines = ['s3://photos/a.png', '{"bucket": "photos", "key": "b.png", "model": "u2netp"}',
             '{"bucket": "photos", "key": "c.png", "model": "isnet-general-use"}']
    store.put("photos", "list.txt", "\n".join(lines).encode(), content_type="text/plain")
    answer = post(app_of(sqlite_ledger, store), "/v1/batches",
                  {"manifest": {"bucket": "photos", "key": "list.txt"}})
    assert answer.status == 202, answer.body
    batch = call(app_of(sqlite_ledger, store), "GET", f"/v1/batches/{answer.json()['id']}",
                 headers=keyed()).json()
    assert batch["state"] == "failed"
    assert batch["expansion"]["reason"] == "model_not_served"
    assert "'isnet-general-use' is not served here" in batch["expansion"]["message"]
    assert sqlite_ledger.list_jobs() == []


def test_a_manifest_line_may_name_a_served_model(sqlite_ledger: SqlLedger) -> None:
    store = MemoryStore()
    lines = ['s3://photos/a.png', '{"bucket": "photos", "key": "b.png", "model": "u2netp"}']
    store.put("photos", "list.txt", "\n".join(lines).encode(), content_type="text/plain")
    answer = post(app_of(sqlite_ledger, store), "/v1/batches",
                  {"manifest": {"bucket": "photos", "key": "list.txt"}, "model": "u2net"})
    assert answer.status == 202, answer.body
    jobs = sqlite_ledger.list_jobs()
    assert sorted((j.key, j.model) for j in jobs) == [("a.png", "u2net"), ("b.png", "u2netp")]
