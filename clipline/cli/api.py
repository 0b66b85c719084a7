"""``clipline api``: the submit-and-poll HTTP API, composed with the real clients."""

from __future__ import annotations

from typing import Any

import typer

from clipline.cli.context import celery_queue, checked_ledger, load_settings
from pipeline.settings import Settings


def api_app(settings: Settings) -> Any:
    """The HTTP API composed with the real clients (also used by the tests)."""
    from pipeline.adapters.callbacks.http import system_resolver
    from pipeline.adapters.ledger.tenants import TenantStore
    from pipeline.adapters.storage.s3 import S3Store, make_client
    from pipeline.api.app import create_app
    from pipeline.api.deps import ApiDeps

    ledger = checked_ledger(settings)
    return create_app(ApiDeps(
        settings=settings, ledger=ledger, tenants=TenantStore(ledger.engine, ledger.clock),
        queue=celery_queue(settings),
        # The API reads manifests only (workers read the images): its cap is the manifest's.
        store=S3Store(make_client(settings), max_bytes=settings.api_max_manifest_bytes),
        resolve=system_resolver,  # callback hosts are checked by what they resolve to, too
    ))


def api(
    host: str | None = typer.Option(None, help="Default CLIPLINE_API_HOST."),
    port: int | None = typer.Option(None, help="Default CLIPLINE_API_PORT."),
) -> None:
    """Serve the submit-and-poll HTTP API (OpenAPI at /docs and /openapi.json), the review page
    at /ui (log in with a tenant key), and remove.bg's endpoint at /v1.0/removebg.

    Tenants and keys come from `clipline tenants`. Jobs submitted here are published to the
    workers at once; `clipline reconcile` covers what Redis loses.
    """
    import uvicorn

    settings = load_settings()
    app_ = api_app(settings)
    where = f"http://{host or settings.api_host}:{port or settings.api_port}"
    typer.echo(f"clipline api: {where}/docs (OpenAPI), {where}/ui (review page, a tenant key "
               "from `clipline tenants key`)", err=True)
    # One process per `clipline api`: run more of them behind a load balancer to scale.
    uvicorn.run(app_, host=host or settings.api_host, port=port or settings.api_port,
                log_config=None, timeout_graceful_shutdown=10)
