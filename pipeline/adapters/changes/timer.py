"""The ``FolderChanges`` fake: announces a change only when told to (``poke``), so a test
drives a watching run's wake-ups by hand; every other wait simply times out."""

from __future__ import annotations

import threading


class TimerChanges:
    def __init__(self) -> None:
        self._changed = threading.Event()
        self.waits: list[float] = []
        """Every timeout asked for, in order."""

    def poke(self) -> None:
        self._changed.set()

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        if not self._changed.wait(max(0.0, timeout)):
            return False
        self._changed.clear()
        return True

    def close(self) -> None:
        self._changed.set()
