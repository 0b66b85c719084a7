"""The API against its own OpenAPI spec, with schemathesis: generated requests, valid and not,
never get a 5xx, and every documented response matches its schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from pipeline.adapters.tenant_store import TenantStore
from tests.distkit import cluster
from workers.cli import api_app

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[Any]:
    with cluster(tmp_path_factory.mktemp("schema"), s3_endpoint, redis_db=8) as c:
        app = api_app(c.settings)
        tenants = TenantStore(c.ledger.engine)
        tenants.save("acme")
        _, key = tenants.create_key("acme")
        yield app, key
        app.state.deps.ledger.close()


def test_the_api_conforms_to_its_spec(deployment: Any) -> None:
    app, key = deployment
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {key}"}
    checked = []
    # schemathesis's pytest plugin does not run on this pytest; its strategies do.
    for found in schema.get_all_operations():
        operation = found.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def conforms(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error,
                                                            response_schema_conformance])

        conforms()
        checked.append(operation.label)
    assert len(checked) >= 10, checked
