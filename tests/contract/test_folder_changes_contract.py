"""One contract for every ``FolderChanges`` (``pipeline.watch``): the OS's notifications and
watchfiles' polling (``pipeline.adapters.changes.notify``) and the fake (``timer``). A quiet
folder times out; a change wakes the waiter; a closed port does not block."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.adapters.changes.notify import NotifiedChanges
from pipeline.adapters.changes.timer import TimerChanges
from pipeline.watch import FolderChanges

Changes = tuple[FolderChanges, Callable[[], None]]


@pytest.fixture(params=["notify", "polling", "timer"])
def changes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Changes]:
    """The port, and what makes a change it must announce."""
    if request.param == "timer":
        fake = TimerChanges()
        yield fake, fake.poke
        return
    names = (tmp_path / f"new-{n}.jpg" for n in itertools.count())
    real = NotifiedChanges(tmp_path, poll=request.param == "polling", poll_interval=0.05)
    try:
        yield real, lambda: next(names).write_bytes(b"x")
    finally:
        real.close()


def _woken(changes: Changes, within: float = 20.0) -> bool:
    """Change the folder until the port says so (a watcher may still be starting)."""
    port, change = changes
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        change()
        if port.wait(0.2):
            return True
    return False


def test_a_quiet_folder_times_out(changes: Changes) -> None:
    port, _ = changes
    started = time.monotonic()
    assert port.wait(0.3) is False
    assert time.monotonic() - started >= 0.25


def test_a_change_wakes_the_waiter(changes: Changes) -> None:
    assert _woken(changes)


def test_closing_stops_the_watcher_and_a_closed_port_does_not_block(changes: Changes) -> None:
    port, _ = changes
    port.close()
    started = time.monotonic()
    port.wait(0.2)
    assert time.monotonic() - started < 5
