"""``clipline run SRC DST``: cut out every image of a folder tree, on this machine."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline import bootstrap, fields, logs
from pipeline.adapters.storage.file import FileStore
from pipeline.embedded import (
    STATE_DIR,
    EmbeddedRun,
    Summary,
    batch_id_for,
    run_lock,
)
from pipeline.errors import InvalidField, InvalidOptions, UsageError
from pipeline.jobs import JobStatus
from pipeline.options import Edges, OutputOptions
from pipeline.ports import Segmenter
from pipeline.run_files import Scan, SourceUnreadable, scan, shown_name
from pipeline.run_names import OutputOwners, plan_outputs
from pipeline.settings import Settings

RUN_EDGES: Edges = "refine"
"""``clipline run``'s (and the demo's) default edges: the per-class tables of docs/QUALITY.md
("Clean and refined edges") favour it with both models. The services keep ``keep`` (the option's
own default) until its cost beside a GPU engine is measured."""

# soft_wrap: commands and paths stay on one line, so they can be copied (and parsed).
console = Console(stderr=True, soft_wrap=True)


def output_options(
    fmt: str, channels: str, bg_color: str | None, crop: bool, crop_margin: str,
    max_side: int | None, subject: str, strict_empty: bool, edges: str = "keep",
    layers: bool = False,
) -> OutputOptions:
    raw: dict[str, Any] = {
        "format": fmt, "channels": channels, "crop": crop, "crop_margin": crop_margin,
        "subject": subject, "edges": edges, "strict_empty": strict_empty, "layers": layers,
    }
    if bg_color:
        raw["bg_color"] = bg_color
    if max_side is not None:
        raw["max_side"] = max_side
    return OutputOptions.parse(raw)


def run(
    src: Path = typer.Argument(..., metavar="SRC", exists=True, file_okay=False, resolve_path=True,
                               help="Folder of images (searched recursively)."),
    dst: Path = typer.Argument(..., metavar="DST", file_okay=False, resolve_path=True,
                               help="Folder for the cut-outs; its .clipline/ keeps the ledger."),
    fmt: str = typer.Option("png", "--format", help="png (lossless, default), webp (lossless) "
                            "or jpg (flattened over --bg-color, white by default)."),
    channels: str = typer.Option("rgba", help="rgba: the cut-out; alpha: the mask alone, grey."),
    bg_color: str | None = typer.Option(None, help="Flatten onto this colour: 'fff', "
                                        "'#336699', 'white'."),
    crop: bool = typer.Option(False, help="Crop to the subject (faint alpha is ignored)."),
    crop_margin: str = typer.Option("0", help="Margin around the crop: '20px' or '5%'."),
    max_side: int | None = typer.Option(None, help="Downscale so no side exceeds this (px)."),
    subject: str = typer.Option("all", help="all: keep the whole mask; main: drop small, "
                                "frame-cut, blurred and doubtful parts (recorded in the "
                                "metadata)."),
    edges: str = typer.Option(RUN_EDGES, help="refine (default here): re-estimate alpha along "
                              "the outline (guided filter), then clean; about 30% less edge "
                              "error in every image class for about half the engine's CPU "
                              "time (docs/QUALITY.md). clean: only the subject's own colour "
                              "on soft edges (foreground estimation; alpha unchanged). keep: "
                              "the mask as the model gave it, the old background's colour in "
                              "soft edges (the services' default)."),
    strict_empty: bool = typer.Option(False, help="An image with no subject fails (empty_mask) "
                                      "instead of giving an empty cut-out."),
    layers: bool = typer.Option(False, help="Record every part of each mask (id, role, "
                                "bbox) and keep the mask in DST/.clipline/layers/, so "
                                "`clipline recompose` can switch parts on and off later."),
    model: str | None = typer.Option(None, help="Model spec (default: CLIPLINE_MODEL, u2net; "
                                     "u2netp is the fast one)."),
    batch_size: int = typer.Option(8, min=1, max=256, help="Images per model call."),
    threads: int = typer.Option(0, min=0, help="Decode/encode threads (0: one per CPU)."),
) -> None:
    """Cut out every image under SRC into DST, mirroring names: a/b.jpg → a/b.png.

    Output names are unique by construction. When images of one folder share a stem
    (shoe.jpg, shoe.png, Shoe.webp: case is ignored), each keeps its extension too:
    shoe.jpg.png, shoe.png.png, Shoe.webp.png. A name still wanted twice goes to the first
    source in sorted order, and the others fail with output_collision. A cut-out that another
    source's job recorded (another SRC into the same DST, or a file that has left SRC) is never
    overwritten (output_collision); a source run again with other options replaces its own.

    Resumable: run it again after Ctrl-C, a crash or new files, and it does only what is not
    done. A changed file is done again, and its old version's failures stop counting. Files
    that cannot be cut out fail on their own with a reason; files whose names the ledger
    cannot hold (not UTF-8, control characters) and folders that cannot be read are refused
    one by one. Summary at the end (on stderr): done, failed and refused by reason, and the
    batch id. Exit status 1 when anything failed or was refused; 2, with one line on stderr and
    nothing written, when the run cannot start.
    """
    settings = Settings()
    # The summary lists failures; the console log shows only what the summary cannot.
    logs.configure(settings.log_format if settings.log_format != "auto" else "console", "ERROR")
    options = output_options(fmt, channels, bg_color, crop, crop_margin, max_side, subject,
                             strict_empty, edges, layers)
    try:
        summary = run_folder(src, dst, options, settings, model=model or settings.model,
                             batch_size=batch_size, threads=threads or os.cpu_count() or 2)
    except KeyboardInterrupt:
        # Finished cut-outs are recorded; the jobs in flight are taken back by the next run.
        console.print("interrupted: what finished is kept; run the same command to go on")
        raise typer.Exit(130) from None
    print_summary(summary, dst)
    if not summary.ok:
        raise typer.Exit(1)


def run_folder(
    src: Path, dst: Path, options: OutputOptions, settings: Settings, *, model: str,
    batch_size: int = 8, threads: int = 2, show_progress: bool = True,
    segmenter: Segmenter | None = None,
) -> Summary:
    """The embedded run behind ``clipline run``; ``segmenter`` defaults to the settings'."""
    check_folders(src, dst)
    try:
        found = scan(src)
    except SourceUnreadable as exc:
        raise UsageError(f"cannot list SRC {src}: {exc.strerror}") from exc
    settings = settings.model_copy(update={"model": model})
    # A missing or damaged model stops the run here, before anything is written into DST.
    segmenter = segmenter or bootstrap.segmenter(settings, threads=threads)
    with run_lock(dst):
        ledger = bootstrap.embedded_ledger(dst / STATE_DIR)
        try:
            return _run(ledger, segmenter, src, dst, found, options, settings,
                        batch_size, threads, show_progress)
        finally:
            ledger.close()


def check_folders(src: Path, dst: Path) -> None:
    """Refuse folders the run cannot work with before anything is written."""
    for what, path in (("SRC", src), ("DST", dst)):
        problem = fields.text_problem(str(path), fields.FOLDER)
        if problem:
            raise InvalidField(what, f"{shown_name(str(path))} {problem}")
    if not src.is_dir():
        raise InvalidOptions(f"SRC {src} is not a folder")
    if dst == src or src in dst.parents:
        raise InvalidOptions(f"DST {dst} must not be inside SRC {src}")
    if dst in src.parents:
        raise InvalidOptions(f"SRC {src} must not be inside DST {dst}: cut-outs would land "
                             "among the sources")


def _run(ledger: Any, segmenter: Segmenter, src: Path, dst: Path, found: Scan,
         options: OutputOptions, settings: Settings, batch_size: int, threads: int,
         show_progress: bool) -> Summary:
    batch = batch_id_for(src, options, settings.model)
    limits = settings.decode_limits
    engine = EmbeddedRun(ledger, FileStore(max_bytes=limits.max_bytes), segmenter,
                         model=settings.model, batch_size=batch_size, threads=threads,
                         limits=limits, plan=plan_outputs(found.files, options.extension))
    engine.owners = OutputOwners(engine.recorded_outputs)
    # We hold the lock: any lease left is from a run that died, and so is any half-written file.
    ledger.reap(every_lease=True)
    for part in dst.rglob(".*.part"):
        part.unlink()
    engine.submit(src, found.files, options, batch)
    engine.supersede(src, batch, found.files)
    # What is not a job is not in the ledger's counts: the batch notes it for `clipline status`.
    ledger.set_batch_meta(batch, {
        "refused": Summary(refused=found.refused).refused_by_reason,
        "refused_names": [shown_name(r.name) for r in found.refused[:10]],
    })
    before = ledger.batch_counts(batch)
    todo = before[JobStatus.QUEUED]
    started = time.perf_counter()
    with ProgressBar(todo, show_progress and console.is_terminal) as advance:
        engine.on_progress = advance
        for _ in range(settings.max_attempts + 1):
            engine.drain(batch, dst)
            if not ledger.batch_counts(batch)[JobStatus.QUEUED]:
                break
            time.sleep(2.0)  # transient failures wait out their (short) backoff
    after = ledger.batch_counts(batch)
    dead = ledger.list_jobs(batch_id=batch, status=JobStatus.DEAD, limit=10)
    return Summary(
        batch_id=batch,
        failures=[(j.key, j.last_error_code or "", j.last_error_message or "") for j in dead],
        total=after.total, already_done=before[JobStatus.SUCCEEDED],
        succeeded=after[JobStatus.SUCCEEDED] - before[JobStatus.SUCCEEDED],
        failed=dict(after.dead_by_reason), skipped_files=found.skipped,
        seconds=time.perf_counter() - started,
        remaining=after[JobStatus.QUEUED] + after[JobStatus.RUNNING],
        refused=found.refused,
    )


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
        _line(f"    {key}: {reason}: {message}")
    for reason, count in sorted(summary.refused_by_reason.items()):
        console.print(f"  [red]refused[/] {count} x {reason} (not recorded as jobs)")
    for refusal in summary.refused[:10]:
        _line(f"    {shown_name(refusal.name)}: {refusal.reason}: {refusal.message}")
    if len(summary.refused) > 10:
        console.print(f"    ... and {len(summary.refused) - 10} more")
    if summary.remaining:
        console.print(f"  [yellow]{summary.remaining} not finished[/]: run the same command again")
    if summary.skipped_files:
        many = summary.skipped_files != 1
        console.print(f"  {summary.skipped_files} {'files were' if many else 'file was'} not "
                      "an image (by name) and skipped")
    _line(f"Cut-outs are in {dst}")
    _line(f"  batch {summary.batch_id}: `clipline status --run {dst} --batch {summary.batch_id}`"
          + (f"; retry with `clipline redrive --run {dst} --reason REASON`, then run again"
             if summary.failed else ""))


def _line(text: str) -> None:
    """One line of plain text: no markup, no highlighting, control characters escaped."""
    console.print(fields.escaped(text, 2000), markup=False, highlight=False)
