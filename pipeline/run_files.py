"""What an embedded run finds in its source folder: image files, and the ones it must refuse.

File names are data, not text: a name is any byte string the file system allows. A file the
ledger cannot key (a name that is not UTF-8, holds a control character such as a newline, or
makes a path over 1,024 bytes: see ``pipeline.fields.KEY``), a file that cannot be looked at
(a broken link, not a regular file) and a folder that cannot be listed are each refused on
their own, with a reason, and the run goes on with the rest.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import fields
from pipeline.errors import InvalidField

# Files named like pictures become jobs. Formats the decoder refuses (SVG, AVIF, HEIC, ...) are
# included on purpose: the user sees "unsupported_format" for them instead of silence.
IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".svg",
    ".avif", ".heic", ".heif", ".ico", ".psd", ".jp2", ".tga",
})

INVALID_FILE_NAME = "invalid_file_name"
UNREADABLE_FILE = "unreadable_file"
UNREADABLE_FOLDER = "unreadable_folder"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A file or folder of SRC that is not a job. ``name`` is its path under SRC as the OS gave
    it (it may hold surrogates or control characters): print it with ``shown_name``."""

    name: str
    reason: str
    message: str


@dataclass
class Scan:
    files: dict[str, str] = field(default_factory=dict)
    """Relative POSIX path → version (``size:mtime_ns``) of every image file to be a job."""
    refused: list[Refusal] = field(default_factory=list)
    skipped: int = 0
    """Files passed over because they are not named like images."""


class SourceUnreadable(OSError):
    """SRC itself cannot be listed."""


def scan(src: Path) -> Scan:
    """Walk ``src`` (hidden files and folders are ignored, as are links to folders)."""
    found = Scan()
    top = os.fspath(src)

    def unreadable(exc: OSError) -> None:
        where = os.fspath(exc.filename) if exc.filename is not None else top
        if where == top:
            raise SourceUnreadable(exc.errno, exc.strerror, top) from exc
        found.refused.append(Refusal(_relative(where, top) + "/", UNREADABLE_FOLDER,
                                     f"cannot list the folder: {exc.strerror}"))

    for root, dirs, files in os.walk(top, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        prefix = "" if root == top else _relative(root, top) + "/"
        for name in sorted(files):
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                found.skipped += 1
                continue
            _add(found, os.path.join(root, name), prefix + name)
    return found


def _add(found: Scan, path: str, key: str) -> None:
    try:
        fields.KEY.check(key)
    except InvalidField as exc:
        found.refused.append(Refusal(key, INVALID_FILE_NAME, f"the file name {exc.problem}"))
        return
    try:
        st = os.stat(path)
    except OSError as exc:
        found.refused.append(Refusal(key, UNREADABLE_FILE, f"cannot stat: {exc.strerror}"))
        return
    if not stat.S_ISREG(st.st_mode):
        found.refused.append(Refusal(key, UNREADABLE_FILE, "not a regular file"))
        return
    found.files[key] = file_version(st)


def file_version(st: os.stat_result) -> str:
    """A file's version as a run keys it: ``size:mtime_ns``."""
    return f"{st.st_size}:{st.st_mtime_ns}"


def _relative(path: str, top: str) -> str:
    return Path(os.path.relpath(path, top)).as_posix()


def shown_name(name: str, limit: int = 200) -> str:
    """A file name fit for a terminal: bytes that are not UTF-8 as ``\\xe9``, control
    characters as ``\\x0a``, everything else as it is; cut to ``limit`` characters."""
    raw = os.fsencode(name).decode("utf-8", "backslashreplace")
    return fields.escaped(raw, limit)
