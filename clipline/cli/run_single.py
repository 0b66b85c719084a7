"""The doors of ``clipline run SRC DST`` besides folder → folder: one file, and ``-`` for a pipe.

Which door each argument is (``doors``)::

    SRC   -                   standard input (read to its end, at most CLIPLINE_MAX_INPUT_BYTES)
          a folder            every image under it (the folder run, ``--watch`` allowed)
          a file              that file, whatever its name
    DST   -                   standard output: the cut-out's bytes and nothing else
          a folder that is    the cut-out inside it, named like the folder run names it
          there, or a name    (photo.jpg → DST/photo.png)
          without extension
          *.png *.webp        that file; the format follows the extension (--format may
          *.jpg *.jpeg        repeat it, not contradict it)

Refused with one line and exit status 2, before anything is read: a folder SRC into a file or
``-``; ``-`` into a folder (standard input has no name to give the cut-out); a file DST of
another extension; ``--watch`` with anything but folders; a DST that is SRC itself; image bytes
onto a terminal, or a terminal as the image; ``--layers`` (its masks live in a folder run's
ledger).

A single file (or a pipe) keeps no ledger: it is cut out each time, and its DST file is
replaced. An image that cannot be cut out is one line on stderr (``clipline: not_an_image:
...``) and exit status 1, as a failed image makes a folder run exit with 1.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import typer

from clipline.cli.run_report import line
from pipeline import bootstrap
from pipeline.adapters.storage.file import FileStore
from pipeline.errors import (
    AccessDenied,
    ClipError,
    InvalidOptions,
    ModelError,
    NotAnImage,
    ObjectMissing,
    ObjectTooLarge,
    PermanentError,
    StorageUnavailable,
    UsageError,
)
from pipeline.options import OutputOptions
from pipeline.ports import Segmenter
from pipeline.process import cut_out
from pipeline.run_files import IMAGE_SUFFIXES, shown_name
from pipeline.run_names import plan_outputs
from pipeline.settings import Settings

Kind = Literal["folder", "file", "pipe"]
WRITTEN = {".png": "png", ".webp": "webp", ".jpg": "jpg", ".jpeg": "jpg"}
"""A file DST's extension → the format written."""
STDIO = "-"


class InvalidArguments(UsageError):
    """SRC and DST (with ``--watch``, ``--format``) that cannot go together."""

    reason = "invalid_arguments"


@dataclass(frozen=True)
class Doors:
    src: Path
    src_kind: Kind
    dst: Path
    dst_kind: Kind
    format: str


def cli_path(value: str, name: str, *, exists: bool = False) -> Path:
    """A SRC or DST argument: ``-`` as it is, any other path made absolute with its links
    resolved; one that must exist and does not is the usage error click gives."""
    if value == STDIO:
        return Path(STDIO)
    path = Path(os.path.realpath(value))
    if exists and not path.exists():
        raise typer.BadParameter(f"path {value!r} does not exist.", param_hint=f"'{name}'")
    return path


def doors(src: Path, dst: Path, fmt: str | None, *, watch: bool = False) -> Doors:
    """What SRC and DST are (see the module's docstring), and the format to write."""
    src_kind: Kind = "pipe" if str(src) == STDIO else "folder" if src.is_dir() else "file"
    dst_kind = _dst_kind(src_kind, dst)
    if watch and (src_kind, dst_kind) != ("folder", "folder"):
        raise InvalidArguments("--watch watches a folder into a folder: SRC and DST must "
                               "both be folders")
    if src_kind == "folder" and dst_kind != "folder":
        raise InvalidArguments(f"SRC is a folder, so DST must be a folder too, not "
                               f"{_shown(dst)}")
    if src_kind == "pipe" and dst_kind == "folder":
        raise InvalidArguments("SRC - (standard input) has no file name to give a cut-out "
                               "in a folder: name a DST file (cut.png) or - (standard output)")
    wanted = WRITTEN.get(dst.suffix.lower()) if dst_kind == "file" else None
    given = None if fmt is None else fmt.lower().replace("jpeg", "jpg")
    if wanted and given and given != wanted:
        raise InvalidOptions(f"format: --format {fmt} but DST {_shown(dst)} is a "
                             f"{dst.suffix} file; give one, or make them agree")
    return Doors(src, src_kind, dst, dst_kind, fmt or wanted or "png")


def _dst_kind(src_kind: Kind, dst: Path) -> Kind:
    if str(dst) == STDIO:
        return "pipe"
    if dst.is_dir():
        return "folder"
    suffix = dst.suffix.lower()
    if suffix in WRITTEN:
        return "file"
    if src_kind == "folder" and suffix not in IMAGE_SUFFIXES and not dst.exists():
        return "folder"
    if not suffix and not dst.exists():
        return "folder"
    raise InvalidArguments(f"DST {_shown(dst)}: clipline writes .png, .webp, .jpg or .jpeg "
                           "files, into a folder, or to - (standard output)")


def run_one(doors_: Doors, options: OutputOptions, settings: Settings, *, model: str,
            threads: int = 2, segmenter: Segmenter | None = None,
            stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> bool:
    """Cut out one file or standard input into a file, a folder or standard output.
    Returns False (after one line on stderr) when the image could not be cut out."""
    target = _target(doors_, options)
    out = stdout or sys.stdout.buffer
    if target is None and out.isatty():
        raise InvalidArguments("DST - would write image bytes to a terminal: redirect "
                               "standard output (> cut.png) or name a DST file")
    if doors_.src_kind == "pipe" and (stdin or sys.stdin.buffer).isatty():
        raise InvalidArguments("SRC - reads an image from standard input, which is a "
                               "terminal: pipe one in (cat photo.jpg | clipline run - ...)")
    settings = settings.model_copy(update={"model": model})
    # A missing or damaged model stops here (exit 2), before anything is read or written.
    segmenter = segmenter or bootstrap.segmenter(settings, threads=threads)
    limits = settings.decode_limits
    started = time.perf_counter()
    try:
        data = _read(doors_, stdin or sys.stdin.buffer, limits.max_bytes)
        cut = cut_out(data, options, segmenter, model=model, limits=limits)
        if target is None:
            _write_stdout(out, cut.data)
        else:
            FileStore().put(str(target.parent), target.name, cut.data,
                            content_type=cut.content_type)
    except ModelError:
        raise
    except ClipError as exc:
        line(f"clipline: {exc.reason}: {exc.message}")
        return False
    where = "standard output" if target is None else shown_name(str(target), 400)
    width, height = cut.metadata["output_size"]
    line(f"{_source_name(doors_)}: cut out in {time.perf_counter() - started:.1f} s → {where} "
         f"({width}x{height} {options.format}, {len(cut.data)} bytes)")
    return True


def _target(doors_: Doors, options: OutputOptions) -> Path | None:
    """The file to write (None: standard output); refuses to write over SRC."""
    if doors_.dst_kind == "pipe":
        return None
    target = doors_.dst
    if doors_.dst_kind == "folder":
        name = doors_.src.name
        target = doors_.dst / plan_outputs([name], options.extension).name_for(name)
    if doors_.src_kind == "file" and (target == doors_.src or (
            target.exists() and os.path.samefile(target, doors_.src))):
        raise InvalidArguments(f"DST {_shown(target)} is SRC itself: the cut-out would "
                               "replace its source")
    return target


def _read(doors_: Doors, stdin: BinaryIO, cap: int) -> bytes:
    if doors_.src_kind == "pipe":
        return read_capped(stdin, cap, "standard input")
    path = doors_.src
    try:
        with open(path, "rb") as handle:
            return read_capped(handle, cap, _shown(path))
    except FileNotFoundError as exc:
        raise ObjectMissing(f"no file {_shown(path)}") from exc
    except PermissionError as exc:
        raise AccessDenied(f"cannot read {_shown(path)}") from exc
    except OSError as exc:
        raise StorageUnavailable(f"reading {_shown(path)}: {exc.strerror}") from exc


def read_capped(stream: BinaryIO, cap: int, what: str) -> bytes:
    """All of ``stream``, refused past ``cap`` bytes (the setting CLIPLINE_MAX_INPUT_BYTES)
    without reading further, and refused when empty."""
    data = stream.read(cap + 1)
    if len(data) > cap:
        raise ObjectTooLarge(f"{what} has more than {cap} bytes, the limit "
                             "(CLIPLINE_MAX_INPUT_BYTES)")
    if not data:
        raise NotAnImage(f"{what} is empty")
    return data


class OutputClosed(PermanentError):
    """DST ``-``: the reader went away (``| head -c 100``, a closed pipe)."""

    reason = "output_closed"
    default_message = "standard output was closed before the whole cut-out was written"


def _write_stdout(out: BinaryIO, data: bytes) -> None:
    try:
        out.write(data)
        out.flush()
    except BrokenPipeError as exc:
        # Nothing more can reach the reader; keep Python's exit-time flush from failing too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
        raise OutputClosed() from exc


def _source_name(doors_: Doors) -> str:
    return "standard input" if doors_.src_kind == "pipe" else shown_name(str(doors_.src), 400)


def _shown(path: Path) -> str:
    return shown_name(str(path), 400)
