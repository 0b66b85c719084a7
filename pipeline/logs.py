"""structlog, configured once per process.

Services log JSON lines; a person at a terminal gets readable console output. Context such as
``job_id``, ``batch_id`` and ``tenant`` is bound with :func:`bind` and rides on every event the
current thread or task writes until :func:`clear` is called.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

_configured = False


def configure(
    fmt: Literal["auto", "json", "console"] = "auto", level: str = "INFO"
) -> None:
    """Set up structlog and the stdlib root logger; safe to call more than once."""
    global _configured
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_json:
        shared.append(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries log through the standard library (Celery, Alembic, botocore): render their
    # records like ours, so a service's stream is all JSON and a terminal all console lines.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "clipline", False)]:
        root.removeHandler(old)  # configure() again replaces its own handler, no other
    handler.clipline = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Alembic narrates every migration step, botocore where it found credentials; warnings show.
    for chatty in ("alembic", "botocore.credentials"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    _configured = True


def get(name: str | None = None) -> Any:
    """A structlog logger; event names are stable snake_case (``job_claimed``)."""
    return structlog.get_logger(name)


def bind(**values: Any) -> None:
    """Bind context (job_id, batch_id, tenant, attempt) for this thread or task."""
    structlog.contextvars.bind_contextvars(**values)


def current() -> dict[str, Any]:
    """The context bound in this thread or task, to carry into a helper thread."""
    return structlog.contextvars.get_contextvars()


def clear() -> None:
    structlog.contextvars.clear_contextvars()
