"""What ``clipline run`` shows a person: the progress bar and the summary, both on stderr (stdout
carries nothing but a cut-out's bytes, when DST is ``-``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline import fields
from pipeline.embedded import Summary
from pipeline.run_files import shown_name

# soft_wrap: commands and paths stay on one line, so they can be copied (and parsed).
console = Console(stderr=True, soft_wrap=True)


class ProgressBar:
    """A rich progress bar on a terminal; silent otherwise (logs and CI stay readable)."""

    def __init__(self, total: int | None, enabled: bool, label: str = "cutting out",
                 unit: str = "img") -> None:
        """``total`` None: a count and a rate, no bar (a stream of unknown length)."""
        self._unit = unit
        self._bar = Progress(
            TextColumn(label), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console,
            disable=not enabled,
        )
        self._task = self._bar.add_task("run", total=total, rate="")
        self._start = time.perf_counter()
        self._done = 0

    def __enter__(self) -> Any:
        self._bar.start()
        return self.advance

    def advance(self, n: int) -> None:
        self._done += n
        rate = self._done / max(1e-9, time.perf_counter() - self._start)
        self._bar.update(self._task, advance=n, rate=f"{rate:.1f} {self._unit}/s")

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()


def print_summary(summary: Summary, dst: Path) -> None:
    """The run's outcome on stderr; every name and message is escaped (a file name may hold
    control characters, bytes that are not UTF-8, or rich markup)."""
    rate = summary.processed / summary.seconds if summary.seconds else 0.0
    files = summary.total + sum(1 for r in summary.refused if not r.name.endswith("/"))
    console.print(
        f"[bold]{summary.succeeded}[/] cut out in {summary.seconds:.1f} s ({rate:.2f} img/s); "
        f"{summary.already_done} already done before this run; {files} "
        f"{'image' if files == 1 else 'images'} in all."
    )
    for reason, count in sorted(summary.failed.items()):
        console.print(f"  [red]failed[/] {count} x {escape(reason)}")
    for key, reason, message in summary.failures:
        line(f"    {key}: {reason}: {message}")
    for reason, count in sorted(summary.refused_by_reason.items()):
        console.print(f"  [red]refused[/] {count} x {reason} (not recorded as jobs)")
    for refusal in summary.refused[:10]:
        line(f"    {shown_name(refusal.name)}: {refusal.reason}: {refusal.message}")
    if len(summary.refused) > 10:
        console.print(f"    ... and {len(summary.refused) - 10} more")
    if summary.remaining:
        console.print(f"  [yellow]{summary.remaining} not finished[/]: run the same command again")
    if summary.skipped_files:
        many = summary.skipped_files != 1
        console.print(f"  {summary.skipped_files} {'files were' if many else 'file was'} not "
                      "an image (by name) and skipped")
    line(f"Cut-outs are in {dst}")
    line(f"  batch {summary.batch_id}: `clipline status --run {dst} --batch {summary.batch_id}`"
          + (f"; retry with `clipline redrive --run {dst} --reason REASON`, then run again"
             if summary.failed else ""))


def line(text: str) -> None:
    """One line of plain text: no markup, no highlighting, control characters escaped."""
    console.print(fields.escaped(text, 2000), markup=False, highlight=False)
