"""The ``Queue`` port on Celery: publishing wake-up messages and reading the broker's depth."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from celery import Celery
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError

from pipeline.errors import BrokerUnavailable
from pipeline.jobs import Dispatch
from workers.app import PROCESS, QUEUES

# Lives as long as the broker's messages do (see CeleryQueue.forgot).
MARKER = "clipline:broker-remembers"
BROKER_ERRORS = (OperationalError, KombuError, RedisError, OSError)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


class CeleryQueue:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def publish(self, dispatches: Sequence[Dispatch]) -> None:
        """One message per dispatch, over one pooled producer connection."""
        if not dispatches:
            return
        with _translated("could not publish to the broker"), \
                self.app.producer_or_acquire() as producer:
            for d in dispatches:
                self.app.send_task(
                    PROCESS,
                    args=[str(d.job_id)],
                    kwargs={"priority": d.priority},
                    countdown=d.delay or None,
                    producer=producer,
                )

    def depth(self) -> int:
        """Messages waiting in the ``interactive`` and ``bulk`` queues (not those held by
        workers)."""
        return sum(self.depths().values())

    def forgot(self) -> bool:
        """Whether the broker lost its contents since the last call: a marker key is set in
        the broker's own database (``SET NX``); a restart without persistence or a FLUSHALL
        removes it with the messages, and the next call sets it again and answers True."""
        with _translated("could not read the broker's marker"), \
                self.app.connection_for_read() as conn:
            client = conn.default_channel.client
            return bool(client.set(MARKER, uuid.uuid4().hex, nx=True))

    def depths(self) -> dict[str, int]:
        """Messages waiting, per queue."""
        with _translated("could not read the broker's queues"), \
                self.app.connection_for_read() as conn:
            channel = conn.default_channel
            # Declaring is idempotent here, and unlike a passive declare it does not depend on
            # this connection having seen the queue before.
            return {name: channel.queue_declare(name).message_count for name in QUEUES}
