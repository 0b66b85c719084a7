"""``clipline datasets``: build composite sets with exact alpha, and sources that need no
download (``pipeline.quality``)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import cast

import typer

from pipeline.quality.composer import (
    DEFAULT_CLASSES,
    RECIPES,
    InvalidComposition,
    SetRequest,
)
from pipeline.quality.set_writer import write_set
from pipeline.quality.sources import Side
from pipeline.quality.synthetic import write_sources

app = typer.Typer(help="Evaluation and training sets: seeded composites with exact alpha.",
                  no_args_is_help=True)

_SIZE = re.compile(r"^(\d{1,5})(?:x(\d{1,5}))?$")


def _sources(values: list[str] | None, option: str) -> dict[str, Path]:
    """``KIND=DIR`` pairs into a mapping; one folder per kind."""
    found: dict[str, Path] = {}
    for value in values or []:
        kind, sep, folder = value.partition("=")
        if not sep or not kind or not folder:
            raise InvalidComposition(f"{option} takes KIND=DIR, not {value!r}")
        if kind in found:
            raise InvalidComposition(f"{option} {kind} is given twice (one folder per kind)")
        found[kind] = Path(folder).expanduser().resolve()
    return found


def _size(value: str) -> tuple[int, int]:
    match = _SIZE.match(value.strip())
    if match is None:
        raise InvalidComposition(f"--size takes N or WxH, not {value!r}")
    w = int(match.group(1))
    return w, int(match.group(2) or w)


@app.command(
    "compose",
    help="Build a seeded composite set with exact alpha in OUT.\n\n"
    "Cut-out objects (--objects KIND=DIR: photo, clipart, people) are placed on backgrounds "
    "(synthesised studio sweeps, and --backgrounds photo=DIR) in named classes: "
    "product-plain (photo object on a studio sweep with a soft shadow), product-scene (photo "
    "object on a photo), illustration (clip-art on a sweep or a photo), multi (a sharp photo "
    "object and a smaller, blurred second one that the ground truth leaves out), people (a "
    "people=DIR object on a photo).\n\n"
    "OUT gets images/ (RGB composites), masks/ (L alpha 0..255), foreground/ (RGB true "
    "colours of the kept subject) and set.json (format clipline-set/1), written last.\n\n"
    "Every file of a source folder is on the train or the eval side by a hash of its path "
    "inside the folder (--eval-share of them eval), whatever the seed: --split eval and "
    "--split train never share an object or a background. The same seed and the same "
    "source files give byte-identical sets. Folders from `scripts/composite-sources.sh` "
    "(Debian packages) or from `clipline datasets synth-sources`.",
)
def compose(
    out: Path = typer.Argument(..., metavar="OUT", resolve_path=True,
                               help="Folder for the set: new, empty, or (--force) a set."),
    objects: list[str] | None = typer.Option(
        None, "--objects", metavar="KIND=DIR",
        help="Cut-outs with alpha, by kind: photo, clipart, people (repeatable)."),
    backgrounds: list[str] | None = typer.Option(
        None, "--backgrounds", metavar="photo=DIR", help="Background photos (repeatable)."),
    classes: str = typer.Option(
        ",".join(DEFAULT_CLASSES), help=f"Comma-separated classes among: {', '.join(RECIPES)}."),
    per_class: int = typer.Option(40, help="Items per class."),
    split: str = typer.Option("eval", help="eval or train: which side's files to use."),
    eval_share: float = typer.Option(0.3, help="Share of each folder's files on the eval side "
                                     "(keep it the same for the train and eval sets)."),
    seed: int = typer.Option(0, help="Seed of every random choice."),
    size: str = typer.Option("512", help="Frame size in pixels: N (square) or WxH."),
    name: str | None = typer.Option(None, help="The set's name (default: OUT's name)."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier set in OUT."),
) -> None:
    """Build a composite set (see the help text above)."""
    if split not in ("eval", "train"):
        raise InvalidComposition(f"--split must be eval or train, not {split!r}")
    request = SetRequest(
        name=name or out.name, seed=seed, split=cast(Side, split), size=_size(size),
        classes=tuple(c.strip() for c in classes.split(",") if c.strip()),
        per_class=per_class, eval_share=eval_share,
        objects=_sources(objects, "--objects"),
        backgrounds=_sources(backgrounds, "--backgrounds"))
    if not request.objects:
        raise InvalidComposition("give at least one --objects KIND=DIR")
    step = max(1, request.per_class * len(request.classes) // 10)

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() and (done % step == 0 or done == total):
            typer.echo(f"{done}/{total}", err=True)

    summary = write_set(request, out, force=force, progress=progress)
    counts = ", ".join(f"{c} {n}" for c, n in summary.counts.items())
    typer.echo(f"{summary.path}: {sum(summary.counts.values())} items ({counts}) in "
               f"{summary.seconds:.1f} s; {summary.skipped} source files skipped "
               "(reasons in set.json)")


@app.command(
    "synth-sources",
    help="Draw procedural source folders in DIR, deterministic for --seed: objects/photo "
    "(shaded, textured shapes with soft edges), objects/clipart (flat colours, outlines) and "
    "backgrounds/photo (textured 'photos'). For tests and CI gates that cannot download; "
    "prints the options to pass to `clipline datasets compose`.",
)
def synth_sources(
    folder: Path = typer.Argument(..., metavar="DIR", resolve_path=True,
                                  help="A new or empty folder to write into (created)."),
    seed: int = typer.Option(0, help="Seed of the drawing."),
    objects: int = typer.Option(12, min=1, max=1000, help="Photo-like objects."),
    clipart: int = typer.Option(8, min=1, max=1000, help="Clip-art objects."),
    backgrounds: int = typer.Option(8, min=1, max=1000, help="Background images."),
) -> None:
    """Write synthetic sources (see the help text above)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InvalidComposition(f"{folder} is not a new or empty folder: older files there "
                                 "would be mixed into the sources")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidComposition(f"cannot create {folder}: {exc.strerror}") from exc
    made = write_sources(folder, seed, n_objects=objects, n_clipart=clipart,
                         n_backgrounds=backgrounds)
    args = [f"--objects {k}={v}" for k, v in made.objects.items()]
    args += [f"--backgrounds {k}={v}" for k, v in made.backgrounds.items()]
    typer.echo(" ".join(args))
