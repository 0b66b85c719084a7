"""A Celery worker that stops on an unrecoverable error exits non-zero, so a supervisor restarts it.

Celery's own ``worker_main`` returned nothing, and ``clipline worker`` exited 0 after
``WorkerLostError('Could not start worker processes')`` in the chaos benchmark.
"""

from __future__ import annotations

import pytest
from celery import Celery, bootsteps

from workers.app import start_worker


class _Unstartable(bootsteps.StartStopStep):
    """A worker part that fails as the prefork pool does when its children keep dying."""

    def start(self, worker: object) -> None:
        raise RuntimeError("Could not start worker processes")


def _app(*steps: type) -> Celery:
    app = Celery("exit-status-test", broker="memory://", set_as_current=False)
    app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=False,
                    task_serializer="json", accept_content=["json"])
    for step in steps:
        app.steps["worker"].add(step)
    return app


ARGV = ["worker", "--pool=solo", "--concurrency=1", "--without-gossip", "--without-mingle",
        "--without-heartbeat", "--loglevel=CRITICAL"]


# Tests run as root here; Celery warns about that, and the warning is not what is tested.
@pytest.mark.filterwarnings("ignore::celery.exceptions.SecurityWarning")
def test_a_worker_that_cannot_start_exits_with_celerys_failure_status() -> None:
    assert start_worker(_app(_Unstartable), ARGV) == 1

