"""An in-memory ``Queue`` for unit tests: it keeps what was published, in order."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pipeline.jobs import Dispatch


class MemoryQueue:
    def __init__(self) -> None:
        self.sent: list[Dispatch] = []
        self._lock = threading.Lock()

    def publish(self, dispatches: Sequence[Dispatch]) -> None:
        with self._lock:
            self.sent.extend(dispatches)

    def depth(self) -> int:
        return len(self.sent)

    def drain(self) -> list[Dispatch]:
        """Take everything published so far, as a worker pool would."""
        with self._lock:
            taken, self.sent = self.sent, []
        return taken
