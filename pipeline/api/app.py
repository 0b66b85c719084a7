"""The FastAPI application: routers, health, metrics, the door. ``create_app`` takes its clients.

The app never builds a client itself: ``clipline.cli.api`` (``clipline api``) composes it with the
SQL ledger, the tenant store, S3 and the Celery queue; tests compose it the same way.
"""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.api import (
    batch_listing,
    batches,
    events,
    jobs,
    previews,
    problems,
    recompose,
    removebg,
    ui,
    uploads,
)
from pipeline.api.deps import ApiDeps
from pipeline.api.door import Door
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
    app.include_router(uploads.router)  # first: its multipart POST /v1/jobs, then JSON's
    app.include_router(jobs.router)
    app.include_router(recompose.router)
    app.include_router(batches.router)
    app.include_router(events.router)
    app.include_router(batch_listing.router)
    app.include_router(previews.router)
    app.include_router(removebg.router)  # remove.bg's request and answer shapes
    app.include_router(ui.router)  # the review page's shell: no data, served without a key
    metrics = _Metrics()
    # The door answers 401/413 before a body is read; the metrics, outside it, count those too.
    app.add_middleware(Door, api=app, keyless={events.WEBHOOK_PATH},
                       dialects={removebg.PREFIX: removebg.refusal})
    app.add_middleware(_Observed, api=app, metrics=metrics)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        # On the event loop, not in the worker threads: it answers while every thread waits.
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
    async def prometheus() -> Response:  # on the loop: a scrape never waits for a thread
        """Prometheus metrics of this API process."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class _Observed:
    """Pure ASGI middleware: every request counted and timed by route, refusals and 5xx too."""

    def __init__(self, app: ASGIApp, *, api: FastAPI, metrics: _Metrics) -> None:
        self.app, self.api, self.metrics = app, api, metrics
        self._templates: list[tuple[re.Pattern[str], str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            self.metrics.observe(scope["method"], self._route(scope), status,
                                 time.perf_counter() - start)

    def _route(self, scope: Scope) -> str:
        """The route's template. The door answers before routing: then match it here."""
        route = scope.get("route")
        if route is not None:
            return str(getattr(route, "path", "unmatched"))
        if self._templates is None:
            paths = self.api.openapi()["paths"]
            self._templates = [(compile_path(path)[0], path) for path in paths]
        return next((path for pattern, path in self._templates if pattern.match(scope["path"])),
                    "unmatched")


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
