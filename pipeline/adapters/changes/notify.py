"""Change notifications for a watched folder, through watchfiles (inotify on Linux, FSEvents on
macOS, ReadDirectoryChangesW on Windows), the only module that imports it.

watchfiles blocks, so it runs on a daemon thread that only sets an event; the watching run
waits on that event with a timeout, and Ctrl-C reaches the main thread as usual. Where the OS
refuses a watcher (no inotify, its watch limit reached) the thread falls back to watchfiles'
polling and says so in the log; ``poll=True`` polls from the start (network file systems,
where notifications of other machines' writes never arrive). If polling fails too, nothing is
announced and the run's own timer still rescans (``pipeline.watch.RESCAN``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import watchfiles

from pipeline import logs

log = logs.get(__name__)


class NotifiedChanges:
    """``FolderChanges`` over watchfiles, for ``folder`` and everything under it."""

    def __init__(self, folder: Path, *, poll: bool = False, poll_interval: float = 0.3) -> None:
        self.folder = folder
        self.polling = poll
        self._poll_ms = max(10, int(poll_interval * 1000))
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="clipline-watch", daemon=True)
        self._thread.start()

    def wait(self, timeout: float) -> bool:
        if not self._changed.wait(max(0.0, timeout)):
            return False
        self._changed.clear()  # a change after this wakes the next wait; one before, the scan sees
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _follow(self) -> None:
        for polling in (True,) if self.polling else (False, True):
            self.polling = polling
            try:
                for _ in watchfiles.watch(
                    self.folder, watch_filter=None, stop_event=self._stop, debounce=400,
                    step=50, raise_interrupt=False, force_polling=True if polling else None,
                    poll_delay_ms=self._poll_ms,
                ):
                    self._changed.set()
                return  # stopped by close()
            except (OSError, RuntimeError) as exc:  # watchfiles' own errors are RuntimeErrors
                log.warning("watch_unavailable", folder=str(self.folder), polling=polling,
                            error=str(exc))
