"""``clipline run SRC DST --watch``: the folder run, again each time SRC changes, until Ctrl-C.

Each round scans SRC, makes jobs of the files that have settled (``pipeline.watch``: size and
modification time still for ``--settle`` seconds, and no writer holding the file open where
the OS can tell) and runs them, exactly as a one-shot run would: the same ledger in
``DST/.clipline``, the same batch, names and summary. So a watching run started again does
only what is not done, and a one-shot run after it finds everything done.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clipline.cli.run_report import console, line
from clipline.cli.run_session import RunSession, check_folders
from pipeline import bootstrap
from pipeline.adapters.changes.notify import NotifiedChanges
from pipeline.embedded import STATE_DIR, Summary, run_lock
from pipeline.errors import UsageError
from pipeline.options import OutputOptions
from pipeline.ports import Segmenter
from pipeline.run_files import SourceUnreadable, scan, shown_name
from pipeline.settings import Settings
from pipeline.watch import RESCAN, FolderChanges, Settling

RETRY_LOOK = 1.0
"""Seconds between looks while jobs wait out a transient failure's backoff."""


@dataclass(frozen=True)
class Watched:
    summary: Summary
    interrupted: bool
    """Ctrl-C came in the middle of a round (what finished is kept)."""
    waiting: int
    """Files that were still being written when the run stopped (never read)."""


def watch_folder(
    src: Path, dst: Path, options: OutputOptions, settings: Settings, *, model: str,
    batch_size: int = 8, threads: int = 2, settle: float = 1.0, poll: bool = False,
    segmenter: Segmenter | None = None, changes: FolderChanges | None = None,
) -> Watched:
    """Watch ``src`` until Ctrl-C (KeyboardInterrupt), which ends it with the summary."""
    check_folders(src, dst)
    settings = settings.model_copy(update={"model": model})
    segmenter = segmenter or bootstrap.segmenter(settings, threads=threads)
    with run_lock(dst):
        ledger = bootstrap.embedded_ledger(dst / STATE_DIR)
        try:
            session = RunSession(ledger, segmenter, src, dst, options, settings,
                                 batch_size=batch_size, threads=threads)
            watch = _Watch(session, Settling(settle))
            changes = changes or NotifiedChanges(src, poll=poll)
            console.print(f"watching {shown_name(str(src))} (settle {settle:g} s"
                          f"{', polling' if poll else ''}); cut-outs go to "
                          f"{shown_name(str(dst))}; Ctrl-C to stop",
                          markup=False, highlight=False)
            try:
                watch.loop(changes)
            except KeyboardInterrupt:
                pass
            finally:
                changes.close()
            return Watched(session.summary(), watch.in_round, watch.settling.waiting)
        finally:
            ledger.close()


class _Watch:
    def __init__(self, session: RunSession, settling: Settling) -> None:
        self.session, self.settling = session, settling
        self.in_round = False
        self._last: tuple[object, ...] | None = None
        self._caught_up = False

    def loop(self, changes: FolderChanges) -> None:
        while True:
            queued = self.look()
            if not self._caught_up and not queued and not self.settling.waiting:
                # Once: what was there at start is done (or failed); from now on, only news.
                self._caught_up = True
                console.print(f"up to date: {self.session.done} done in all; watching for "
                              "changes", markup=False, highlight=False)
            timeouts = [RESCAN, self.settling.next_look() or RESCAN]
            if queued:
                timeouts.append(RETRY_LOOK)
            changes.wait(min(timeouts))

    def look(self) -> int:
        """Scan SRC; run a round when what has settled changed or jobs wait; returns how
        many jobs are still queued (waiting out a backoff)."""
        session = self.session
        try:
            found = scan(session.src)
        except SourceUnreadable as exc:
            raise UsageError(f"cannot list SRC {session.src}: {exc.strerror}") from exc
        ready = self.settling.ready(session.src, found.files)
        state = (ready, [(r.name, r.reason) for r in found.refused], found.skipped)
        if state == self._last and not session.queued():
            return 0
        self.in_round = True
        session.submit(found, ready)
        done, failed = session.drain()
        self.in_round = False
        self._last = state
        if done or failed:
            self.report(done, failed)
        return session.queued()

    def report(self, done: int, failed: int) -> None:
        waiting = self.settling.waiting
        text = f"{done} cut out" + (f", {failed} failed" if failed else "")
        text += f" ({self.session.done} done in all"
        text += f", {waiting} still being written)" if waiting else ")"
        console.print(text, markup=False, highlight=False)


def report_stop(watched: Watched, dst: Path) -> None:
    """After the summary: what Ctrl-C left (on stderr)."""
    if watched.waiting:
        many = watched.waiting != 1
        line(f"  {watched.waiting} {'files were' if many else 'file was'} still being "
             "written and not read: run the same command again once complete")
    if watched.interrupted:
        line("interrupted in the middle of a round: what finished is kept; run the same "
             "command to go on")
