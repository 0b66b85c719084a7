"""An in-memory ``Queue`` for unit tests: it keeps what was published, in order."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pipeline.jobs import Dispatch


class MemoryQueue:
    def __init__(self) -> None:
        self.sent: list[Dispatch] = []
        self._lock = threading.Lock()
        self._remembers = True  # the broker's marker (see Queue.forgot); ``flush`` drops it

    def publish(self, dispatches: Sequence[Dispatch]) -> None:
        with self._lock:
            self.sent.extend(dispatches)

    def depth(self) -> int:
        return len(self.sent)

    def forgot(self) -> bool:
        with self._lock:
            lost, self._remembers = not self._remembers, True
        return lost

    def flush(self) -> None:
        """Lose every message, as a Redis FLUSHALL or an empty restart does."""
        with self._lock:
            self.sent, self._remembers = [], False

    def drain(self) -> list[Dispatch]:
        """Take everything published so far, as a worker pool would."""
        with self._lock:
            taken, self.sent = self.sent, []
        return taken
