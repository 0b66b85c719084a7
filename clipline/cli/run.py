"""``clipline run SRC DST``: cut out every image of a folder tree, one file or a pipe, on this
machine; ``--watch`` keeps a folder run going as images arrive.

The doors (which SRC and DST go together) are ``clipline.cli.run_single``'s; a folder run's
rounds are ``clipline.cli.run_session``'s, watching is ``clipline.cli.run_watch``'s, and what a
person sees (progress, summary; all on stderr) is ``clipline.cli.run_report``'s.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import typer

from clipline.cli.run_report import ProgressBar, console, print_summary
from clipline.cli.run_session import RunSession, check_folders
from clipline.cli.run_single import InvalidArguments, cli_path, doors, run_one
from clipline.cli.run_watch import report_stop, watch_folder
from pipeline import bootstrap, logs
from pipeline.embedded import STATE_DIR, Summary, run_lock
from pipeline.errors import UsageError
from pipeline.options import Edges, OutputOptions
from pipeline.ports import Segmenter
from pipeline.run_files import SourceUnreadable, scan
from pipeline.settings import Settings
from pipeline.watch import DEFAULT_SETTLE

# What other commands use from here (the progress bar, the summary, the folder run).
__all__ = ["RUN_EDGES", "ProgressBar", "check_folders", "console", "output_options",
           "print_summary", "run", "run_folder"]

RUN_EDGES: Edges = "refine"
"""``clipline run``'s (and the demo's) default edges: the per-class tables of docs/QUALITY.md
("Clean and refined edges") favour it with both models. The services keep ``keep`` (the option's
own default) until its cost beside a GPU engine is measured."""

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
    # str, not Path: typer (0.29) compares "-" with a Path it has already made of it.
    src_arg: str = typer.Argument(..., metavar="SRC", help="A folder of images (searched "
                                  "recursively), one image file, or - for standard input."),
    dst_arg: str = typer.Argument(..., metavar="DST", help="A folder for the cut-outs (a folder "
                                  "run keeps its ledger in DST/.clipline/), a .png/.webp/.jpg "
                                  "file, or - for standard output."),
    fmt: str | None = typer.Option(None, "--format", help="png (lossless, default), webp "
                                   "(lossless) or jpg (flattened over --bg-color, white by "
                                   "default). A DST file's extension sets it."),
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
    watch: bool = typer.Option(False, "--watch", help="Keep running: cut out the images that "
                               "appear or change in SRC (a folder), each once it is completely "
                               "written. Ctrl-C stops it with the summary."),
    settle: float | None = typer.Option(None, min=0.0, help="With --watch: seconds a file's "
                                        "size and modification time must stay the same, with "
                                        "no writer holding it open, before it is read "
                                        f"[default: {DEFAULT_SETTLE:g}]."),
    poll: bool = typer.Option(False, "--poll", help="With --watch: look at SRC every 0.3 s "
                              "instead of asking the OS for changes (network file systems); "
                              "used anyway where the OS refuses."),
) -> None:
    """Cut out a folder, one file, or a pipe; with --watch, a folder as files arrive.

    A folder: every image under SRC into DST, mirroring names: a/b.jpg → a/b.png.

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

    One file or a pipe: `clipline run photo.jpg cut.png` (or into a folder: cut/photo.png),
    `cat photo.jpg | clipline run - - > cut.png`. The format follows DST's extension (or
    --format; on standard output png unless --format says otherwise). No ledger: the file is
    cut out every time and DST is replaced. Standard output carries the image's bytes only;
    one line on stderr says what was done. An image that cannot be cut out is one line on
    stderr and exit status 1; a folder SRC into a file, - into a folder, or --watch on a file
    is refused with exit status 2.

    Watching: `clipline run photos/ cutouts/ --watch` does the folder run, then again each
    time SRC changes. A file is read once its size and time have stayed the same for --settle
    seconds and no writer holds it open (Linux tells), so a half-copied file is never read.
    Same ledger, so a restart does only what is not done. Ctrl-C prints the summary; exit
    status 0 when every image was cut out, 1 when something failed, was refused or was still
    being written, 130 when Ctrl-C came in the middle of a round.
    """
    settings = Settings()
    # The summary lists failures; the console log shows only what the summary cannot.
    logs.configure(settings.log_format if settings.log_format != "auto" else "console", "ERROR")
    if not watch and (settle is not None or poll):
        raise InvalidArguments("--settle and --poll go with --watch")
    src, dst = cli_path(src_arg, "SRC", exists=True), cli_path(dst_arg, "DST")
    door = doors(src, dst, fmt, watch=watch)
    if layers and door.src_kind != "folder":
        raise InvalidArguments("--layers keeps each mask in a folder run's ledger "
                               "(DST/.clipline/): give folders, or leave it out")
    options = output_options(door.format, channels, bg_color, crop, crop_margin, max_side,
                             subject, strict_empty, edges, layers)
    model = model or settings.model
    threads = threads or os.cpu_count() or 2
    try:
        if door.src_kind != "folder":
            if not run_one(door, options, settings, model=model, threads=threads):
                raise typer.Exit(1)
            return
        if watch:
            watched = watch_folder(src, dst, options, settings, model=model,
                                   batch_size=batch_size, threads=threads,
                                   settle=DEFAULT_SETTLE if settle is None else settle,
                                   poll=poll)
            print_summary(watched.summary, dst)
            report_stop(watched, dst)
            ok = watched.summary.ok and not watched.waiting
            raise typer.Exit(130 if watched.interrupted else 0 if ok else 1)
        summary = run_folder(src, dst, options, settings, model=model, batch_size=batch_size,
                             threads=threads)
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
            session = RunSession(ledger, segmenter, src, dst, options, settings,
                                 batch_size=batch_size, threads=threads)
            todo = session.submit(found)
            with ProgressBar(todo, show_progress and console.is_terminal) as advance:
                for _ in range(settings.max_attempts + 1):
                    session.drain(advance)
                    if not session.queued():
                        break
                    time.sleep(2.0)  # transient failures wait out their (short) backoff
            return session.summary()
        finally:
            ledger.close()
