"""The Celery application: its configuration, and ``start_worker``, which runs it. Tasks are in
``workers.tasks``.

The broker is a wake-up channel, never the record: messages are JSON, carry only a job id, and
the ledger decides what a delivery means. Hence:

- ``acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged after its task, and
  a worker process that dies mid-task puts it back (the re-delivery is then skipped or retried
  according to the ledger, never run twice at once: the lease decides);
- prefetch multiplier 1: a worker process holds one message at a time, so a slow job does not
  strand others behind it;
- a visibility timeout longer than the hard time limit: Redis re-delivers an unacknowledged
  message only after that, so a long job is not duplicated while it runs;
- queues ``interactive`` and ``bulk``, routed by the job's priority; workers consume both and
  take ``interactive`` first (kombu's ``priority`` queue order).
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

from pipeline.settings import Settings

PROCESS = "clipline.process"
RECONCILE = "clipline.reconcile"
INTERACTIVE, BULK = "interactive", "bulk"
QUEUES = (INTERACTIVE, BULK)  # in the order workers take them


def queue_for(priority: int, settings: Settings) -> str:
    return INTERACTIVE if priority >= settings.interactive_priority else BULK


def config(settings: Settings) -> dict[str, Any]:
    """Celery's settings, from Clipline's."""

    def route(name: str, args: Any, kwargs: Any, options: Any, task: Any = None,
              **extra: Any) -> dict[str, str] | None:
        if name == PROCESS:
            return {"queue": queue_for(int((kwargs or {}).get("priority", 0)), settings)}
        if name == RECONCILE:  # never behind a bulk backlog: it is what repairs one
            return {"queue": INTERACTIVE}
        return None

    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 5,
        "broker_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout_seconds,
            "queue_order_strategy": "priority",
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
        },
        # A publish to a Redis that is down fails in seconds: the ledger already has the job and
        # the reconciler will send its message, so waiting longer gains nothing.
        "task_publish_retry_policy": {
            "max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1,
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit_seconds,
        "task_time_limit": settings.task_time_limit_seconds,
        "worker_max_memory_per_child": settings.worker_max_memory_per_child_mb * 1024,  # KiB
        # Each queue its own exchange and key: left unset, Celery binds every queue to the
        # default exchange and key, and one message would land in both.
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name)
                        for name in QUEUES],
        "task_default_queue": BULK,
        "task_routes": (route,),
        "task_create_missing_queues": False,
        "worker_hijack_root_logger": False,
        # Task events feed Flower; they cost a Redis publish per state change.
        "worker_send_task_events": settings.celery_events,
        "task_send_sent_event": settings.celery_events,
        # Beat keeps its schedule file with Clipline's data, not in whatever folder it started.
        "beat_schedule_filename": str(settings.data_dir / "celerybeat-schedule"),
        "beat_schedule": {
            "reconcile": {"task": RECONCILE, "schedule": settings.reconcile_interval_seconds},
        },
    }


def worker_argv(settings: Settings, processes: int, queues: str, pool: str,
                name: str = "clipline") -> list[str]:
    """The ``celery worker`` arguments ``clipline worker`` runs with: ``processes`` pool
    processes consuming ``queues`` (comma-separated, first preferred) on ``pool``, no gossip or
    mingle, the settings' log level and memory cap per child, a hostname ``NAME-%h-<random>``."""
    return [
        "worker", f"--concurrency={processes}", f"--queues={queues}", f"--pool={pool}",
        f"--loglevel={settings.log_level}", "--without-gossip", "--without-mingle",
        f"--max-memory-per-child={settings.worker_max_memory_per_child_mb * 1024}",
        f"--hostname={name}-%h-{uuid.uuid4().hex[:6]}",
    ]


def start_worker(celery_app: Celery, argv: list[str]) -> int:
    """Run ``celery worker`` with ``argv`` in this process; return its exit status.

    ``Celery.worker_main`` drops the status (celery 5.x: ``Celery.start`` ignores what click's
    non-standalone ``main`` returns), so a worker that stopped on an unrecoverable error (logged
    at CRITICAL, e.g. ``WorkerLostError('Could not start worker processes')``) used to exit 0,
    and a supervisor that restarts on failure only would leave it down.
    """
    from celery.bin.celery import celery as command

    command.params[0].default = celery_app  # what Celery.start does: the app for --app
    try:
        status = command.main(args=argv, standalone_mode=False)
    finally:
        command.params[0].default = None
    return status if isinstance(status, int) else 0


def create_app(settings: Settings) -> Celery:
    app = Celery("clipline", include=["workers.tasks"], set_as_current=True)
    app.conf.update(config(settings))
    return app


# One app per process, from the environment: worker processes, `celery -A workers.app`, and
# `clipline` commands that publish all build it the same way.
settings = Settings()
app = create_app(settings)
