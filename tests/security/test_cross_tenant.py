"""Attacker's checklist, other tenants: with a valid key of its own, a tenant learns nothing
about another tenant's job, batch or dead letters, and can change none of them. Each answer
for another tenant's id is the answer for an id that does not exist."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.errors import NotAnImage
from pipeline.jobs import JobSpec, JobStatus
from tests.security.conftest import World, unknown_id


@pytest.fixture
def victim(world: World) -> dict[str, Any]:
    """acme's finished job, dead job and batch; globex is the attacker."""
    world.tenants.save("acme", allowed_sources=["photos/"])
    done = world.ledger.submit(JobSpec("photos", "done.jpg"), tenant="acme").job
    claim = world.ledger.claim(done.id, worker="w")
    world.ledger.complete(done.id, claim.token, {"output": {"bucket": "out", "key": "d.png"}})
    dead = world.ledger.submit(JobSpec("photos", "dead.jpg"), tenant="acme").job
    claim = world.ledger.claim(dead.id, worker="w")
    world.ledger.fail(dead.id, claim.token, NotAnImage())
    batch = world.ledger.create_batch("acme", label="acme's")
    return {"done": str(done.id), "dead": str(dead.id), "batch": str(batch),
            "acme": world.client(world.key("acme")),
            "globex": world.client(world.key("globex", ["photos/"]))}


def same_as_unknown(attack: Any, make: Any, real_id: str) -> None:
    """``make(id)`` answers for another tenant's id exactly as for an unknown id."""
    theirs, unknown = make(real_id), make(unknown_id())
    assert theirs.status_code == unknown.status_code == 404, theirs.text
    assert theirs.json() == {**unknown.json(), **{
        k: v.replace(unknown_id(), real_id) for k, v in unknown.json().items()
        if isinstance(v, str)}}


def test_another_tenants_job_and_its_presigned_url_are_404(victim: dict[str, Any]) -> None:
    acme, globex = victim["acme"], victim["globex"]
    assert acme.get(f"/v1/jobs/{victim['done']}").json()["output"]["url"].startswith("https://")
    same_as_unknown(globex, lambda i: globex.get(f"/v1/jobs/{i}"), victim["done"])


def test_another_tenants_job_cannot_be_cancelled(world: World,
                                                 victim: dict[str, Any]) -> None:
    globex = victim["globex"]
    queued = world.ledger.submit(JobSpec("photos", "q.jpg"), tenant="acme").job
    same_as_unknown(globex, lambda i: globex.post(f"/v1/jobs/{i}/cancel"), str(queued.id))
    assert world.ledger.get(queued.id, tenant="acme").status is JobStatus.QUEUED


def test_another_tenants_batch_is_404(victim: dict[str, Any]) -> None:
    globex = victim["globex"]
    same_as_unknown(globex, lambda i: globex.get(f"/v1/batches/{i}"), victim["batch"])
    assert globex.get("/v1/jobs", params={"batch": victim["batch"]}).json()["items"] == []


def test_another_tenants_dead_letters_are_invisible_and_stay_dead(
        world: World, victim: dict[str, Any]) -> None:
    globex = victim["globex"]
    assert globex.get("/v1/dead-letters").json()["items"] == []
    assert globex.get("/v1/jobs").json()["items"] == []
    for body in ({"ids": [victim["dead"]]}, {"reason": "not_an_image"}):
        assert globex.post("/v1/dead-letters/redrive", json=body).json() == {"redriven": 0}
    assert victim["acme"].get(f"/v1/jobs/{victim['dead']}").json()["status"] == "dead"


def test_another_tenants_job_cannot_be_recomposed(victim: dict[str, Any]) -> None:
    globex = victim["globex"]
    same_as_unknown(globex, lambda i: globex.post(f"/v1/jobs/{i}/recompose",
                                                  json={"layers": [0]}), victim["done"])
