"""Attacker's checklist, callbacks: a ``callback_url`` must never aim the reconciler's signed
POST inside the network, whether the URL spells the address, hides it in another spelling, or
names a host that resolves (or is re-pointed, DNS rebinding) to it.

Hole 3 of issue 18: any host was accepted (``test_hole_3_*``)."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from pipeline.adapters.callbacks.http import HttpSender
from pipeline.adapters.ledger.schema import jobs
from pipeline.callback_address import CallbackPolicy, parse_networks
from pipeline.callbacks import deliver_due
from pipeline.errors import CallbackRefused
from pipeline.jobs import JobSpec
from pipeline.retry import Backoff
from tests.security.conftest import World, job

INSIDE = [
    "https://127.0.0.1:8443/hook", "https://10.0.0.5/admin", "https://[::1]/",
    "https://169.254.169.254/latest/meta-data/iam/", "https://172.16.0.1/", "https://192.168.1.1/",
    "https://[fd00::1]/", "https://[fe80::1]/", "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:169.254.169.254]/", "https://0.0.0.0/", "https://[::]/",
    "https://224.0.0.1/", "https://[ff02::1]/", "https://240.0.0.1/", "https://100.64.0.1/",
    "https://2130706433/", "https://0x7f000001/", "https://0177.0.0.1/", "https://127.1/",
    "https://0x0a.0.0.5/", "https://localhost/", "https://api.localhost/",
    "https://[2002:7f00:1::]/", "https://[64:ff9b::a00:5]/",
]


@pytest.mark.parametrize("url", INSIDE)
def test_hole_3_callback_urls_inside_the_network_are_refused_at_submit(world: World,
                                                                        url: str) -> None:
    client = world.client(world.key("acme", ["photos/"]))
    answer = client.post("/v1/jobs", json=job(callback_url=url))
    assert answer.status_code == 422, (url, answer.text)
    assert answer.json()["code"] == "callback_url_not_allowed"
    batch = client.post("/v1/batches", json={"items": [{"bucket": "photos", "key": "b.jpg"}],
                                             "callback_url": url})
    assert batch.status_code == 422
    assert world.ledger.list_jobs(tenant="acme") == []


def test_hole_3_a_name_that_resolves_inside_is_refused_at_submit(world: World) -> None:
    world.deps.resolve = lambda host, port: ["10.0.0.5"]
    client = world.client(world.key("acme", ["photos/"]))
    answer = client.post("/v1/jobs", json=job(callback_url="https://hooks.example.com/x"))
    assert answer.status_code == 422 and answer.json()["why"] == "private"


def test_a_public_callback_is_accepted(world: World) -> None:
    world.deps.resolve = lambda host, port: ["93.184.215.14"]
    client = world.client(world.key("acme", ["photos/"]))
    for url in ("https://93.184.215.14/hook", "https://hooks.example.com/x"):
        assert client.post("/v1/jobs", json=job(f"{url[-4:]}.jpg", callback_url=url)
                           ).status_code == 202


class Receiver:
    """A plain-http receiver on loopback that records the Host header of each call."""

    def __init__(self, status: int = 200, location: str | None = None) -> None:
        self.hosts: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.hosts.append(self.headers["Host"])
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


class Resolver:
    """DNS as the attacker controls it: each lookup gives the next answer."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers, self.asked = list(answers), 0

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked += 1
        return self.answers.pop(0)


DEV = CallbackPolicy(allow_http=True, allow_networks=parse_networks("127.0.0.1/32"))


def test_hole_3_delivery_checks_the_address_the_name_resolves_to_now() -> None:
    sender = HttpSender(timeout=2, policy=CallbackPolicy(), resolve=Resolver(["10.1.2.3"]))
    with pytest.raises(CallbackRefused) as refused:
        sender.post("https://rebound.example.com/hook", b"{}", {})
    assert refused.value.why == "private"


def test_delivery_goes_to_the_address_it_checked_with_the_name_as_host(
        receiver: Receiver) -> None:
    resolve = Resolver(["127.0.0.1"], ["10.9.9.9"])  # a second lookup would be refused
    sender = HttpSender(timeout=5, policy=DEV, resolve=resolve)
    assert sender.post(f"http://receiver.test:{receiver.port}/hook", b"{}", {}) is None
    assert receiver.hosts == [f"receiver.test:{receiver.port}"] and resolve.asked == 1


def test_loopback_is_refused_at_delivery_without_the_development_setting(
        receiver: Receiver) -> None:
    sender = HttpSender(timeout=5, policy=CallbackPolicy(allow_http=True),
                        resolve=Resolver(["127.0.0.1"]))
    with pytest.raises(CallbackRefused):
        sender.post(f"http://receiver.test:{receiver.port}/hook", b"{}", {})
    assert receiver.hosts == []


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    bouncer = Receiver(302, f"http://127.0.0.1:{receiver.port}/inside")
    try:
        sender = HttpSender(timeout=5, policy=DEV, resolve=Resolver(["127.0.0.1"]))
        assert sender.post(f"http://bounce.test:{bouncer.port}/", b"{}", {}) == "HTTP 302"
    finally:
        bouncer.close()
    assert receiver.hosts == []


def test_a_refusal_fails_the_callback_at_once_with_its_reason(world: World) -> None:
    world.tenants.save("acme", allowed_sources=["photos/"])
    made = world.ledger.submit(JobSpec("photos", "a.jpg"), tenant="acme",
                               callback_url="https://rebound.example.com/hook").job
    claim = world.ledger.claim(made.id, worker="w")
    assert claim is not None
    world.ledger.complete(made.id, claim.token, {"output": {"bucket": "o", "key": "a.png"}})
    sender = HttpSender(timeout=2, resolve=Resolver(["169.254.169.254"]))
    report = deliver_due(world.ledger, sender, world.tenants.callback_secret,
                         backoff=Backoff(1, 2), max_attempts=8, rng=random.Random(18))
    assert (report.delivered, report.retrying, report.failed) == (0, 0, 1)
    with world.ledger.engine.connect() as conn:
        state, error = conn.execute(select(jobs.c.callback_state, jobs.c.callback_error)
                                    .where(jobs.c.id == made.id)).one()
    assert state == "failed"
    assert "callback_address_refused (link_local)" in error and "169.254.169.254" in error
    assert isinstance(made.id, uuid.UUID)
