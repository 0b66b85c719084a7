"""Writing a composite set to disk so that a crash never leaves a set.json that lies.

The set is built in a hidden sibling folder (``.OUT.partial-PID``), set.json written last, and
only then moved into place with a rename; a failure removes the partial folder. An ``OUT`` that
exists must be empty, or, with ``force``, an earlier set (a folder holding set.json): it is
replaced whole. Any other non-empty folder is refused and left untouched.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.quality.composer import (
    SET_FORMAT,
    Composer,
    Composite,
    InvalidComposition,
    SetRequest,
)

SUBFOLDERS = ("images", "masks", "foreground")


@dataclass(frozen=True)
class SetSummary:
    """What :func:`write_set` built: items per class, files skipped, seconds taken."""

    path: Path
    counts: dict[str, int]
    skipped: int
    seconds: float


def code_version() -> str:
    """``clipline <version>+compose.<12 hex>``: the package version and a digest of this
    package's source, so a set records the code that drew it."""
    try:
        version = importlib.metadata.version("clipline")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"clipline {version}+compose.{digest.hexdigest()[:12]}"


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InvalidComposition(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise InvalidComposition(f"{out} is not empty (--force replaces an earlier set)")
        if not (out / "set.json").is_file():
            raise InvalidComposition(
                f"{out} is not empty and holds no set.json: --force only replaces a set")


def _save(folder: Path, stem: str, composite: Composite) -> None:
    Image.fromarray(composite.image, "RGB").save(folder / "images" / f"{stem}.png")
    Image.fromarray(composite.alpha, "L").save(folder / "masks" / f"{stem}.png")
    Image.fromarray(composite.foreground, "RGB").save(folder / "foreground" / f"{stem}.png")


def _manifest(request: SetRequest, composer: Composer,
              items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": SET_FORMAT,
        "name": request.name,
        "seed": request.seed,
        "split": request.split,
        "size": list(request.size),
        "classes": list(dict.fromkeys(c for _, c in composer.items())),
        "items": items,
        "sources": {
            "objects": {k: str(v) for k, v in sorted(request.objects.items())},
            "backgrounds": {k: str(v) for k, v in sorted(request.backgrounds.items())},
        },
        "code_version": code_version(),
        "eval_share": request.eval_share,
        "per_class": request.per_class,
        **composer.provenance(),
    }


def write_set(request: SetRequest, out: Path, *, force: bool = False,
              progress: Callable[[int, int], None] | None = None) -> SetSummary:
    """Build ``request`` into ``out`` (see the module docstring); ``progress(done, total)``
    is called after each item. Raises ``InvalidComposition`` or ``InvalidSources`` before
    anything is written; an ``OSError`` while writing leaves ``out`` as it was."""
    started = time.monotonic()
    _check_out(out, force)
    composer = Composer(request)  # scans the folders: refuses before anything is written
    plan = composer.items()
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        for sub in SUBFOLDERS:
            (partial / sub).mkdir(parents=True)
        items = []
        for done, (stem, cls) in enumerate(plan, 1):
            composite = composer.compose(stem, cls)
            _save(partial, stem, composite)
            items.append(composite.meta)
            if progress is not None:
                progress(done, len(plan))
        manifest = _manifest(request, composer, items)
        (partial / "set.json").write_text(json.dumps(manifest, indent=1) + "\n")
        _replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    counts = Counter(item["class"] for item in items)
    return SetSummary(out, dict(counts), len(manifest["skipped"]),
                      round(time.monotonic() - started, 2))


def _replace(partial: Path, out: Path) -> None:
    """Move the finished set into place; an earlier set there is removed after the swap."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        partial.rename(out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    out.rename(old)
    partial.rename(out)
    shutil.rmtree(old, ignore_errors=True)
