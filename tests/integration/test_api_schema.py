"""The API against its own OpenAPI spec, with schemathesis: generated requests, valid and not,
never get a 5xx, and every documented response matches its schema.

Deterministic in CI: every run draws the same examples from one explicit seed
(``CLIPLINE_FUZZ_SEED``, default ``CI_SEED``), so a green run stays green. Examples that once
failed are kept below as explicit cases (``REGRESSIONS``) and run on every run. ``make fuzz-api``
runs the same tests deeper with a fresh seed each time (``CLIPLINE_FUZZ_EXAMPLES``, printed
seed); when it finds a failure, add the request to ``REGRESSIONS`` and fix the door.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import text

from clipline.cli.api import api_app
from pipeline.adapters.ledger.tenants import TenantStore
from tests.distkit import cluster

CI_SEED = 20261130
SEED = int(os.environ.get("CLIPLINE_FUZZ_SEED", CI_SEED))
EXAMPLES = int(os.environ.get("CLIPLINE_FUZZ_EXAMPLES", 25))
STEPS = int(os.environ.get("CLIPLINE_FUZZ_STEPS", 10))
# A chain of STEPS calls took about 0.45 s at 30 steps (2,000 chains in 15 min with the rest):
# the timeout leaves twice that for a deep `make fuzz-api` run.
pytestmark = [pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.timeout(max(600, EXAMPLES * STEPS // 5))]
PENDING = ("POST /v1.0/removebg", 504, "result_pending")


@schemathesis.check
def no_server_error_but_a_pending_cut_out(ctx: Any, response: Any, case: Any) -> None:
    """``not_a_server_error``, but for the remove.bg facade's one documented 5xx: no worker
    runs here, so a valid image (schemathesis makes tiny real PNGs for a binary field) waits
    out CLIPLINE_REMOVEBG_WAIT_SECONDS and is answered ``504 result_pending``, its job queued."""
    if (case.operation.label, response.status_code) == PENDING[:2]:
        assert response.json()["errors"][0]["code"] == PENDING[2], response.text
        return
    not_a_server_error(ctx, response, case)


CHECKS = [no_server_error_but_a_pending_cut_out, response_schema_conformance]
OPERATIONS = 17  # every route of the API, /openapi.json aside (the /ui shell is not in it)

# Requests that once got a 5xx (found by schemathesis, or reported): each is replayed as is.
# (operation label, path parameters, query, headers, body)
REGRESSIONS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, str], Any]] = [
    # PostgreSQL refused the NUL byte (psycopg.DataError) and the API answered 500.
    ("POST /v1/jobs", {}, {}, {},
     {"source": {"bucket": "broker", "key": "\u0000", "version": "1"}}),
    ("POST /v1/jobs", {}, {}, {}, {"source": {"bucket": "broker", "key": "a", "version": "\x00"}}),
    ("POST /v1/jobs", {}, {}, {"Idempotency-Key": "k\x01"}, {"source": {"bucket": "bkt",
                                                                       "key": "a.jpg"}}),
    ("POST /v1/jobs", {}, {}, {}, {"source": {"bucket": "bkt", "key": "a.jpg"},
                                   "options": {"\x00": 1}}),
    ("POST /v1/jobs", {}, {}, {}, {"source": {"bucket": "bkt", "key": "a.jpg"},
                                   "options": {"max_side": "²"}}),
    ("POST /v1/jobs", {}, {}, {}, {"source": {"bucket": "bkt", "key": "a.jpg"},
                                   "options": {"max_side": "9" * 5000}}),
    ("POST /v1/jobs", {}, {}, {}, {"source": {"bucket": "bkt", "key": "\ud800.jpg"}}),
    ("GET /v1/jobs", {}, {"reason": "\x00"}, {}, None),
    ("GET /v1/dead-letters", {}, {"reason": "a\x00"}, {}, None),
    ("POST /v1/dead-letters/redrive", {}, {}, {}, {"reason": "\x00"}),
    ("POST /v1/batches", {}, {}, {}, {"label": "\x00", "items": []}),
    ("POST /v1/batches", {}, {}, {}, {"items": [{"bucket": "bkt", "key": "a\x00.jpg"}]}),
    ("POST /v1/batches", {}, {}, {}, {"items": [{"bucket": "bkt", "key": "a.jpg",
                                                  "version": "v\x00"}]}),
    ("POST /v1/batches", {}, {}, {}, {"prefix": "s3://bkt/in\x00/"}),
    ("POST /v1/batches", {}, {}, {}, {"manifest": {"bucket": "bkt", "key": "m\x00"}}),
]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[Any]:
    # No rate limit: a 429 that depends on timing would make the run non-deterministic.
    with cluster(tmp_path_factory.mktemp("schema"), s3_endpoint, redis_db=8,
                 API_RATE_PER_SECOND="1000000", API_RATE_BURST="1000000",
                 REMOVEBG_WAIT_SECONDS="0.2") as c:
        app = api_app(c.settings)
        tenants = TenantStore(c.ledger.engine)
        tenants.save("acme", allow_any=True)  # the fuzzer names any bucket
        _, key = tenants.create_key("acme")
        yield app, {"Authorization": f"Bearer {key}"}, c.ledger.engine
        app.state.deps.ledger.close()


def fuzz_settings() -> settings:
    return settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                    database=None, derandomize=False, print_blob=True,
                    suppress_health_check=list(HealthCheck))


def test_every_operation_conforms_to_the_spec(deployment: Any) -> None:
    app, headers, _ = deployment
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checked = []
    print(f"schemathesis seed {SEED}, {EXAMPLES} examples per operation")
    # schemathesis's pytest plugin does not run on this pytest; its strategies do.
    for found in schema.get_all_operations():
        operation = found.ok()

        @seed(SEED)
        @given(case=operation.as_strategy())
        @fuzz_settings()
        def conforms(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        conforms()
        checked.append(operation.label)
    assert len(checked) == OPERATIONS, checked


def test_chains_of_calls_conform_to_the_spec(deployment: Any) -> None:
    """Stateful: a job submitted is then fetched, cancelled, listed; a batch created is fetched
    (the links schemathesis infers from the responses' ids and ``Location`` headers)."""
    app, headers, engine = deployment
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    machine = schema.as_state_machine()
    assert schema.statistic.transitions.total >= 10, "the links between operations are gone"

    class Chains(machine):  # type: ignore[misc,valid-type]
        def setup(self) -> None:
            # Every scenario starts from no jobs: hypothesis replays a scenario to shrink it,
            # and a replay must see the answers the first run saw (202, not an idempotent 200).
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE job_events, jobs, batches"))

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": headers}

        def validate_response(self, response: Any, case: Any,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    seed(SEED)(Chains)  # hypothesis reads the seed off the machine's class
    Chains.run(settings=fuzz_settings())


@pytest.mark.parametrize(("label", "path", "query", "extra", "body"), REGRESSIONS,
                         ids=[f"{r[0]}-{n}" for n, r in enumerate(REGRESSIONS)])
def test_requests_that_once_failed(deployment: Any, label: str, path: dict[str, Any],
                                   query: dict[str, Any], extra: dict[str, str],
                                   body: Any) -> None:
    app, headers, _ = deployment
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    kwargs: dict[str, Any] = {"path_parameters": path, "query": query or None,
                              "headers": {**headers, **extra}}
    if body is not None:
        kwargs.update(body=body, media_type="application/json")
    case = schema.make_case(operation=operation, **kwargs)
    response = case.call_and_validate(checks=CHECKS)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] in {"invalid_request", "invalid_options", "invalid_field"}, problem
