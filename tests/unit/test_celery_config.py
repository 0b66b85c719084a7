"""The Celery configuration holds the delivery guarantees the design depends on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.settings import Settings
from workers.app import BULK, INTERACTIVE, PROCESS, RECONCILE, config, create_app


def _route(settings: Settings, name: str, **kwargs: object) -> object:
    [router] = config(settings)["task_routes"]
    return router(name, [], kwargs, {})


def test_delivery_settings() -> None:
    settings = Settings(task_time_limit_seconds=90, task_soft_time_limit_seconds=60,
                        broker_visibility_timeout_seconds=600)
    conf = config(settings)
    assert conf["task_serializer"] == "json" and conf["accept_content"] == ["json"]
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert (conf["task_soft_time_limit"], conf["task_time_limit"]) == (60, 90)
    assert conf["broker_transport_options"]["visibility_timeout"] == 600
    assert conf["broker_transport_options"]["queue_order_strategy"] == "priority"
    assert conf["worker_max_memory_per_child"] == 2048 * 1024  # KiB
    assert conf["task_ignore_result"] and conf["result_backend"] is None


def test_the_visibility_timeout_must_outlast_a_countdown_and_then_the_whole_task() -> None:
    # A countdown message is unacknowledged from delivery until its task ends.
    Settings(task_time_limit_seconds=180, max_countdown_seconds=60,
             broker_visibility_timeout_seconds=241)
    with pytest.raises(ValidationError, match="must exceed task_time_limit_seconds \\+ "):
        Settings(task_time_limit_seconds=180, max_countdown_seconds=60,
                 broker_visibility_timeout_seconds=240)
    assert Settings().broker_visibility_timeout_seconds == 300  # what a killed worker held


def test_each_queue_has_its_own_exchange_and_key() -> None:
    queues = {q.name: q for q in config(Settings())["task_queues"]}
    assert set(queues) == {INTERACTIVE, BULK}
    for name, queue in queues.items():
        assert (queue.exchange.name, queue.routing_key) == (name, name)


def test_jobs_are_routed_by_priority_and_the_reconciler_goes_first() -> None:
    settings = Settings(interactive_priority=5)
    assert _route(settings, PROCESS, priority=4) == {"queue": BULK}
    assert _route(settings, PROCESS, priority=5) == {"queue": INTERACTIVE}
    assert _route(settings, PROCESS) == {"queue": BULK}
    assert _route(settings, RECONCILE) == {"queue": INTERACTIVE}
    assert _route(settings, "something.else") is None


def test_beat_runs_the_reconciler_at_the_configured_interval() -> None:
    app = create_app(Settings(reconcile_interval_seconds=7))
    entry = app.conf.beat_schedule["reconcile"]
    assert (entry["task"], entry["schedule"]) == (RECONCILE, 7)
