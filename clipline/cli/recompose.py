"""``clipline recompose OUTPUT``: a cut-out of ``clipline run --layers`` again, parts on or off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pipeline import fields
from pipeline.adapters.storage.file import FileStore
from pipeline.embedded import STATE_DIR
from pipeline.errors import (
    InvalidOptions,
    LayersNotRecorded,
    ObjectChanged,
    UnknownLayer,
    UsageError,
)
from pipeline.imaging.layered import LayeredFormat
from pipeline.jobs import Job, JobStatus
from pipeline.recompose import (
    StoredLayers,
    is_selection_key,
    layered_file,
    recompose,
    selection_key,
    stored_layers,
)
from pipeline.run_files import file_version
from pipeline.settings import Settings

PAGE = 2000


def recompose_command(
    output: Path = typer.Argument(..., metavar="OUTPUT", exists=True, dir_okay=False,
                                  resolve_path=True,
                                  help="A cut-out written by `clipline run --layers`."),
    show: str | None = typer.Option(None, "--show", metavar="IDS",
                                    help="Show only these parts, e.g. 0,2 (ids from --list)."),
    hide: str | None = typer.Option(None, "--hide", metavar="IDS",
                                    help="Hide these parts from the run's own selection, "
                                    "e.g. 1."),
    to: Path | None = typer.Option(None, "--to", dir_okay=False, resolve_path=True,
                                   help="Write here (default: beside OUTPUT, named "
                                   "NAME.layers-DIGEST.EXT after the set shown)."),
    list_parts: bool = typer.Option(False, "--list", help="Only list the parts; write nothing."),
    layered: str | None = typer.Option(
        None, "--layered", help="Write a layered file for designers instead (psd: Photoshop; "
        "ora: OpenRaster, for GIMP or Krita): one layer per part, main on top, a part not "
        "shown hidden, and the source as a hidden 'original' layer at the bottom."),
) -> None:
    """Write OUTPUT again with a chosen set of its parts, without running the model.

    A run with --layers records every part of each mask: an id (0, 1, 2, ...), a role (main,
    kept, or dropped by --subject main, with the reason), a bbox and a portability score; and
    it keeps the mask in DST/.clipline/layers/. This command finds OUTPUT's job in the run's
    ledger (the DST folder above OUTPUT that holds .clipline/), reads the source the run cut out
    (it must be unchanged since) and that mask, and writes a new file with the same options:

      --show 0,2   only parts 0 and 2;   --hide 1   the run's own parts but 1;

    neither: the run's own selection (the same bytes as OUTPUT). With --layered psd|ora the
    new file is a layered one (NAME.layers-DIGEST.psd or .ora), the same choice deciding which
    layers are visible. A part that is hidden loses
    every pixel it owns, soft edge included (each pixel belongs to its nearest part); the
    other pixels stay as they are. A layered file is of the whole source: the run's --crop and
    --max-side do not apply to it. `--list` prints the parts to stdout (id, role, shown or
    hidden, bbox [x, y, w, h] in source pixels, area as a share of the image, confidence,
    relative focus, portability). Otherwise the new file's path goes to stdout and one line
    per part to stderr. It never overwrites the run's cut-outs, its state or any other file but
    an earlier recomposition of OUTPUT. Exit status 2, with one line on stderr, when OUTPUT has
    no layers, an id is unknown or the target is refused.
    """
    if show is not None and hide is not None:
        raise typer.BadParameter("give --show or --hide, not both")
    dst = run_folder_of(output)
    name = output.relative_to(dst).as_posix()
    job = job_of(dst, name)
    try:
        layers = stored_layers(job)
    except LayersNotRecorded as exc:
        raise LayersNotRecorded(job.id, f"{name} was cut out without --layers: run `clipline "
                                "run` on the same folders again with --layers (the model runs "
                                "again)") from exc
    if list_parts:
        for part in layers.described(layers.job_selection):
            typer.echo(_part_line(part))
        return
    shown = chosen(layers, show, hide)
    limits = Settings().decode_limits
    store = FileStore(max_bytes=limits.max_bytes)
    source_path = Path(job.bucket) / job.key
    try:
        version = file_version(source_path.stat())
    except OSError as exc:
        raise UsageError(f"the source {source_path} cannot be read: {exc.strerror}") from exc
    if version != job.version:
        raise ObjectChanged(f"the source {source_path} changed after it was cut out: run "
                            "`clipline run` again first")
    source, mask = store.get(job.bucket, job.key), store.get(str(dst), layers.mask)
    if layered is None:
        cut = recompose(source, mask, layers.options, shown, limits=limits)
    else:
        cut = layered_file(layered_format(layered), source, mask, layers.parts, shown=shown,
                           limits=limits)
    target = to or dst / selection_key(name, shown, extension=cut.extension)
    check_target(target, dst, name, cut.extension)
    store.put(str(target.parent), target.name, cut.data, content_type=cut.content_type)
    for part in layers.described(shown):
        typer.echo(_part_line(part), err=True)
    typer.echo(str(target))


def run_folder_of(output: Path) -> Path:
    """The embedded run's DST that holds ``output``: the nearest folder above it with a ledger."""
    for folder in output.parents:
        if (folder / STATE_DIR / "ledger.sqlite3").is_file():
            return folder
    raise UsageError(f"{fields.escaped(str(output), 500)} is not inside the output folder of a "
                     "`clipline run` (no .clipline/ledger.sqlite3 above it)")


def check_target(target: Path, dst: Path, name: str, extension: str) -> None:
    """Refuse (``UsageError``) a target that would lose data or mislead: one in the run's state
    folder, one whose suffix is not ``extension``, or an existing file other than an earlier
    recomposition of ``name`` (``NAME.layers-DIGEST.EXT`` beside it) - the run's cut-outs and
    the user's sources included: a recomposition never overwrites them."""
    suffix = target.suffix.lower()
    if suffix != extension and not (extension == ".jpg" and suffix == ".jpeg"):
        raise UsageError(f"--to {fields.escaped(str(target), 500)}: this file is {extension[1:]}; "
                         f"give a name ending in {extension}")
    if target.is_relative_to(dst / STATE_DIR):
        raise UsageError(f"{fields.escaped(str(target), 500)} is inside the run's state "
                         f"folder {STATE_DIR}/: choose another --to")
    if not target.exists() and not target.is_symlink():
        return
    relative = target.relative_to(dst).as_posix() if target.is_relative_to(dst) else None
    if (relative is None or not is_selection_key(name, relative)
            or find_job(dst, relative) is not None):
        raise UsageError(f"{fields.escaped(str(target), 500)} exists and is not an earlier "
                         "recomposition of this cut-out: it is not overwritten (choose another "
                         "--to, or remove it first)")


def job_of(dst: Path, name: str) -> Job:
    """The job that last wrote the cut-out ``name`` (a path under ``dst``); ``UsageError``
    when none did."""
    found = find_job(dst, name)
    if found is None:
        raise UsageError(f"no job of the run in {dst} wrote {name}")
    return found


def find_job(dst: Path, name: str) -> Job | None:
    """The job that last wrote the cut-out ``name`` (a path under ``dst``), or None."""
    from pipeline.adapters.ledger.database import make_engine
    from pipeline.adapters.ledger.sql import SqlLedger

    ledger = SqlLedger(make_engine(f"sqlite:///{(dst / STATE_DIR / 'ledger.sqlite3')}"))
    try:
        found: Job | None = None
        after: str | None = None
        while True:
            page = ledger.page_jobs(status=JobStatus.SUCCEEDED, after=after, limit=PAGE)
            for job in page.items:
                if (job.result or {}).get("output") == name and (
                        found is None or _finished(job) > _finished(found)):
                    found = job
            if (after := page.next_cursor) is None:
                break
    finally:
        ledger.close()
    return found


def chosen(layers: StoredLayers, show: str | None, hide: str | None) -> frozenset[int]:
    """The ids to show: ``show`` alone, or the run's selection less ``hide``."""
    if show is not None:
        return ids(show, "--show")
    if hide is not None:
        hidden = ids(hide, "--hide")
        unknown = sorted(hidden - {int(p["id"]) for p in layers.parts})
        if unknown:
            raise UnknownLayer(f"--hide: no part {', '.join(map(str, unknown[:10]))}: the mask "
                               f"has {len(layers.parts)} parts (see --list)")
        return layers.job_selection - hidden
    return layers.job_selection


def ids(text: str, flag: str) -> frozenset[int]:
    """``"0,2"`` -> {0, 2}; ``""`` -> none."""
    found: set[int] = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        if not item.isascii() or not item.isdigit():
            raise InvalidOptions(f"{flag}: {fields.escaped(item, 40)!r} is not a part id "
                                 "(0, 1, 2, ...)")
        found.add(int(item))
    return frozenset(found)


def _finished(job: Job) -> Any:
    return (job.finished_at or job.updated_at, str(job.id))


def _part_line(part: dict[str, Any]) -> str:
    """``id role (reason) shown|hidden bbox=[x, y, w, h] area=... confidence=... focus=...
    portability=...``: bbox in source pixels, area as a share of the image."""
    reason = f" ({part['reason']})" if part.get("reason") else ""
    extras = [f"{key}={part[field]}" for key, field in (
        ("area", "area_fraction"), ("confidence", "confidence"), ("focus", "relative_focus"),
        ("portability", "portability")) if part.get(field) is not None]
    return (f"  {part['id']:>3} {part['role']}{reason} "
            f"{'shown' if part['shown'] else 'hidden'} bbox={part['bbox']} " + " ".join(extras))



def layered_format(text: str) -> LayeredFormat:
    """``--layered``'s value: ``psd`` or ``ora``; else ``typer.BadParameter``."""
    if text == "psd":
        return "psd"
    if text == "ora":
        return "ora"
    raise typer.BadParameter(f"--layered: {fields.escaped(text, 40)!r} is not psd or ora")
