"""The FastAPI application: routers, health, metrics, limits. ``create_app`` takes its clients.

The app never builds a client itself: ``workers.cli`` (``clipline api``) composes it with the
SQL ledger, the tenant store, S3 and the Celery queue; tests compose it the same way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from pipeline.api import batches, events, jobs, problems
from pipeline.api.deps import ApiDeps
from pipeline.api.problems import problem_response
from pipeline.api.schemas import problem_responses

VERSION = "1"


def create_app(deps: ApiDeps) -> FastAPI:
    app = FastAPI(
        responses=problem_responses(401, 403, 404, 409, 413, 422, 429, 503),
        title="Clipline",
        version=VERSION,
        summary="Background removal for product images: submit jobs that point at S3 objects, "
        "poll them by id.",
        description="Authenticate with `Authorization: Bearer <API key>` (or `X-API-Key`). "
        "Errors are `application/problem+json` (RFC 9457) with a stable `code`.",
    )
    app.state.deps = deps
    problems.install(app)
    app.include_router(jobs.router)
    app.include_router(batches.router)
    app.include_router(events.router)
    metrics = _Metrics()
    limit = deps.settings.api_max_body_bytes

    @app.middleware("http")
    async def guard(request: Request,
                    call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length and (not length.isdigit() or int(length) > limit):
            return problem_response(413, "body_too_large", "The request body is too large",
                                    f"at most {limit} bytes")
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.observe(request.method, path, response.status_code,
                        time.perf_counter() - start)
        return response

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"],
             responses={503: {"description": "The database or the broker is unreachable."}})
    def readyz() -> Any:
        """The ledger's database and the broker answer."""
        checks: dict[str, str] = {}
        for name, check in (("database", deps.ledger.ping), ("broker", deps.queue.depth)):
            try:
                check()
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                checks[name] = f"{type(exc).__name__}: {exc}"[:300]
        if all(v == "ok" for v in checks.values()):
            return {"status": "ready", **checks}
        return problem_response(503, "not_ready", "A dependency is unreachable", **checks)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus metrics of this API process."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("clipline_api_requests", "API requests.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("clipline_api_request_seconds", "API request latency.",
                                 ["route"], registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
