"""Watching a source folder: which files are completely written, and when to look again.

``clipline run SRC DST --watch`` keeps the embedded run going. Each time SRC changes, or a
timer runs out, it scans SRC again and runs one more round of the folder run over the files
that have *settled*. A file has settled when

- its size and modification time have stayed the same for ``settle`` seconds, as this process
  saw them (a file already there at start waits one settle interval too), and
- no process has it open for writing, where the OS can tell: Linux refuses a read lease on a
  file that some process holds open for writing. On other systems, on a file this user does
  not own, and on file systems without leases (NFS, most FUSE), the first test alone decides.

So a file still being copied is not read: a one-shot run can pick up a half-copied file (it
fails as ``corrupt_image`` and is redone once complete), a watching run waits for it. A version
once accepted stays accepted until the file changes, so a settled file costs one ``stat`` per
round.

Change notifications only wake the loop up; the scan decides what is there (as the ledger, not
the Redis message, decides what a worker does). ``FolderChanges`` is that wake-up's port;
``pipeline.adapters.changes`` has the OS notifications (watchfiles: inotify, FSEvents, ...,
polling where they are absent) and a timer-only fake.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

DEFAULT_SETTLE = 1.0
"""Seconds a file's size and modification time must stay put before it is read."""
RESCAN = 30.0
"""Seconds between scans when nothing is announced: a change the notifications missed (a
network file system, a watcher that fell back) is found within this."""


class FolderChanges(Protocol):
    """Wakes a watching run when something under its folder may have changed."""

    def wait(self, timeout: float) -> bool:
        """Block until a change is announced (True) or ``timeout`` seconds pass (False)."""
        ...

    def close(self) -> None: ...


def open_for_writing(path: Path) -> bool:
    """Whether some process holds ``path`` open for writing, as far as the OS can tell: False
    when none does, and when the OS cannot say (see the module's docstring)."""
    lease = getattr(fcntl, "F_SETLEASE", None)  # Linux only
    if lease is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False  # gone or unreadable: the round's own read says why
    try:
        # A writer opening the file while the lease is held breaks it, and the kernel tells
        # the holder with SIGIO, whose default action ends the process: tell us with SIGURG,
        # whose default is to ignore it (the writer waits the microseconds until F_UNLCK).
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, lease, fcntl.F_RDLCK)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EBUSY)  # else EACCES, EINVAL: cannot say
    else:
        fcntl.fcntl(fd, lease, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


@dataclass
class _Seen:
    version: str
    since: float
    accepted: bool = False


@dataclass
class Settling:
    """Which of a scan's files have settled (``ready``), and when to look again
    (``next_look``). ``files`` map a key (a path relative to ``src``) to its version, as
    ``pipeline.run_files.scan`` gives them."""

    settle: float = DEFAULT_SETTLE
    clock: Callable[[], float] = time.monotonic
    writing: Callable[[Path], bool] = open_for_writing
    _seen: dict[str, _Seen] = field(default_factory=dict)

    def ready(self, src: Path, files: Mapping[str, str]) -> dict[str, str]:
        """The files of ``files`` that have settled; the others are still being written."""
        now = self.clock()
        seen: dict[str, _Seen] = {}
        ready: dict[str, str] = {}
        for key, version in files.items():
            old = self._seen.get(key)
            entry = old if old is not None and old.version == version else _Seen(version, now)
            if not entry.accepted and now - entry.since >= self.settle:
                entry.accepted = not self.writing(src / key)
            if entry.accepted:
                ready[key] = version
            seen[key] = entry
        self._seen = seen
        return ready

    @property
    def waiting(self) -> int:
        """Files seen in the last scan that have not settled yet."""
        return sum(1 for entry in self._seen.values() if not entry.accepted)

    def next_look(self) -> float | None:
        """Seconds until a file still settling may have settled; None when none is waiting.
        A file that stays still but open for writing is looked at again every ``settle``."""
        now = self.clock()
        waits = [entry.since + self.settle - now for entry in self._seen.values()
                 if not entry.accepted]
        if not waits:
            return None
        return max(0.05, min(w if w > 0 else self.settle for w in waits))
