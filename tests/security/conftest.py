"""One in-process deployment per test, as an attacker meets it: the real API app served over
HTTP on loopback, the real ledger and tenant store (SQLite, migrated), the real CLI; a fake
object store that records every read (so a test can say nothing was read) and a memory queue.
No Redis, no PostgreSQL, no S3: the doors are what is attacked here, not the services behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from pipeline.adapters.ledger.database import make_engine, upgrade
from pipeline.adapters.ledger.sql import SqlLedger
from pipeline.adapters.ledger.tenants import TenantStore
from pipeline.adapters.queue.memory import MemoryQueue
from pipeline.api.app import create_app
from pipeline.api.deps import ApiDeps
from pipeline.errors import ObjectMissing
from pipeline.settings import Settings
from tests.distkit import serve

WEBHOOK_SECRET = "security-webhook-secret"
RULES = """
[[rule]]
bucket = "photos"
tenant = "acme"

[[rule]]
bucket = "payroll"
tenant = "acme"
"""


@dataclass
class Store:
    """The API's ``SourceStore``, in memory, recording what the API read or listed."""

    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    touched: list[tuple[str, str, str]] = field(default_factory=list)

    def get(self, bucket: str, key: str, *, version: str | None = None) -> bytes:
        self.touched.append(("get", bucket, key))
        if (bucket, key) not in self.objects:
            raise ObjectMissing(f"s3://{bucket}/{key}")
        return self.objects[(bucket, key)]

    def list_keys(self, bucket: str, prefix: str = "") -> Iterable[str]:
        self.touched.append(("list", bucket, prefix))
        return sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix))

    def presign(self, bucket: str, key: str, expires: int = 3600) -> str:
        return f"https://signed.example/{bucket}/{key}?expires={expires}"


@dataclass
class World:
    url: str
    db_url: str
    ledger: SqlLedger
    tenants: TenantStore
    store: Store
    deps: ApiDeps
    clients: list[httpx.Client] = field(default_factory=list)

    def key(self, tenant: str, allow: list[str] | None = None) -> str:
        """A live key for ``tenant``, created (with ``allow``) if it does not exist."""
        if self.tenants.get(tenant) is None or allow is not None:
            self.tenants.save(tenant, allowed_sources=allow)
        return self.tenants.create_key(tenant)[1]

    def client(self, key: str) -> httpx.Client:
        made = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"},
                            timeout=30)
        self.clients.append(made)
        return made

    def cli(self, *args: str) -> Result:
        from clipline.cli import app

        return CliRunner().invoke(app, list(args), env={"CLIPLINE_DATABASE_URL": self.db_url})

    def webhook(self, bucket: str, key: str) -> httpx.Response:
        body = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 10, "eTag": "abc", "sequencer": "17A0"}}}]}
        return httpx.post(f"{self.url}/v1/events/webhook", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    db_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    upgrade(db_url)
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    settings = Settings(data_dir=tmp_path, database_url=db_url,  # type: ignore[call-arg]
                        events_rules_file=rules, events_webhook_secret=WEBHOOK_SECRET,
                        api_rate_per_second=100000, api_rate_burst=100000)
    ledger = SqlLedger(make_engine(db_url))
    tenants, store = TenantStore(ledger.engine), Store()
    deps = ApiDeps(settings=settings, ledger=ledger, tenants=tenants, queue=MemoryQueue(),
                   store=store)
    with serve(create_app(deps)) as url:
        made = World(url, db_url, ledger, tenants, store, deps)
        try:
            yield made
        finally:
            for client in made.clients:
                client.close()
    ledger.close()


def job(key: str = "a.jpg", bucket: str = "photos", **extra: Any) -> dict[str, Any]:
    return {"source": {"bucket": bucket, "key": key}, **extra}


def unknown_id() -> str:
    return str(uuid.UUID(int=0x0190_0000_0000_7000_8000_0000_0000_0042))
