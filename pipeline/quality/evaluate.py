"""One evaluation: cut out every image of the sets with the real engine, score, report.

The engine is not called here: the caller passes ``cut``, a function that cuts out every image
of a folder into another as RGBA PNGs (``clipline eval`` passes ``clipline run``'s own
``run_folder``, so the numbers are those of the product, whatever segmenter the settings pick).
The cut-outs stay in ``OUT/cutouts/<set>/<stem>.png``, so a later run can show them beside
its own when it uses this one as its baseline.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from pipeline.errors import UsageError
from pipeline.models import get_spec, inspect
from pipeline.quality.metrics import METRICS_VERSION, score
from pipeline.quality.report import REPORT_FORMAT, means, per_class
from pipeline.quality.sets import EvalSet, SetItem, read_truth
from pipeline.settings import Settings

CUTOUTS = "cutouts"
SHEETS = "sheets"
STATE = ".clipline"  # what ``clipline run`` keeps in every output folder it writes

CutFolder = Callable[[Path, Path], object]
"""(folder of input images, folder for their cut-outs) → anything; writes ``<stem>.png``."""


class OutFolderInUse(UsageError):
    """The output folder holds something this command did not write, or the baseline."""

    reason = "out_folder_in_use"


def prepare_out(out: Path, sets: Sequence[EvalSet], baseline: Path | None = None) -> None:
    """Make ``out`` ready for a fresh evaluation: earlier cut-outs of these sets and earlier
    sheets are removed (a cut-out left from another model must never be scored). Refused when
    ``out`` holds the baseline report (its pictures would be lost), or a ``cutouts/<set>``
    folder that ``clipline run`` did not write."""
    if baseline is not None and baseline.resolve().parent == out.resolve():
        raise OutFolderInUse(f"--out {out} holds the baseline report {baseline.name}: write "
                             "the candidate elsewhere")
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise UsageError(f"two sets share the folder name {max(names, key=names.count)!r}; "
                         "their cut-outs would mix")
    for name in names:
        folder = out / CUTOUTS / name
        if folder.exists():
            if not (folder / STATE).is_dir():
                raise OutFolderInUse(f"{folder} exists and is not an earlier evaluation's")
            shutil.rmtree(folder)
    for old in (out / SHEETS).glob("*.png"):
        old.unlink()


def evaluate(sets: Sequence[EvalSet], out: Path, cut: CutFolder, *,
             model: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """Cut out and score every image of ``sets``; return the report (see
    ``pipeline.quality.report``). ``model`` and ``options`` are recorded as given."""
    started = time.perf_counter()
    cut_seconds = score_seconds = 0.0
    images: list[dict[str, Any]] = []
    for eval_set in sets:
        dst = out / CUTOUTS / eval_set.name
        begin = time.perf_counter()
        cut(eval_set.images_dir, dst)
        cut_seconds += time.perf_counter() - begin
        begin = time.perf_counter()
        images += [_score_item(eval_set.name, item, dst) for item in eval_set.items]
        score_seconds += time.perf_counter() - begin
    seconds = time.perf_counter() - started
    return {
        "format": REPORT_FORMAT,
        "metrics_version": METRICS_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": dict(model),
        "options": dict(options),
        "code_version": code_version(),
        "sets": [_set_record(s) for s in sets],
        "classes": per_class(images),
        "overall": means(images),
        "images": images,
        "cutouts": CUTOUTS,
        "timing": {
            "seconds": round(seconds, 3),
            "cutout_seconds": round(cut_seconds, 3),
            "metrics_seconds": round(score_seconds, 3),
            "images_per_second": round(len(images) / cut_seconds, 3) if cut_seconds else None,
        },
    }


def read_cutout(path: Path, size: tuple[int, int]) -> npt.NDArray[np.uint8] | None:
    """The RGBA cut-out at ``path`` as [H, W, 4] uint8, or None when there is none; a cut-out
    of another size than its image (``size``: width, height) is refused."""
    if not path.is_file():
        return None
    with Image.open(path) as img:
        if img.size != size:
            raise UsageError(f"{path}: the cut-out is {img.size[0]}x{img.size[1]}, its image "
                             f"{size[0]}x{size[1]} (options that crop or resize cannot be "
                             "scored)")
        return np.asarray(img.convert("RGBA"), dtype=np.uint8)


def _score_item(set_name: str, item: SetItem, dst: Path) -> dict[str, Any]:
    truth, colour = read_truth(item)
    cutout = read_cutout(dst / f"{item.stem}.png", item.size)
    failed = cutout is None
    if cutout is None:  # the engine failed this image: what the user gets is nothing
        cutout = np.zeros((*truth.shape, 4), dtype=np.uint8)
    scores = score(cutout, colour, truth)
    return {"set": set_name, "stem": item.stem, "class": item.class_name,
            **{k: round(v, 6) for k, v in scores.as_dict().items()}, "failed": failed}


def _set_record(eval_set: EvalSet) -> dict[str, Any]:
    return {"name": eval_set.name, "path": str(eval_set.root), "kind": eval_set.kind,
            "fingerprint": eval_set.fingerprint, "count": len(eval_set.items),
            "classes": eval_set.class_counts()}


def model_identity(settings: Settings) -> dict[str, Any]:
    """{name, segmenter, sha256}: the sha256 of the model file in the models folder when it is
    there and matches its checksum, else None (the fake segmenter; Triton without a local copy)."""
    digest: str | None = None
    if settings.segmenter != "fake":
        state = inspect(get_spec(settings.model, settings.model_folder), settings.model_folder)
        digest = state.actual if state.verified else None
    return {"name": settings.model, "segmenter": settings.segmenter, "sha256": digest}


def code_version() -> dict[str, str]:
    """{package: the installed clipline version, git: ``git describe --always --dirty`` of the
    checkout this code runs from, or "unknown" outside one}."""
    try:
        package = importlib.metadata.version("clipline")
    except importlib.metadata.PackageNotFoundError:
        package = "unknown"
    root = Path(__file__).resolve().parents[2]
    git = "unknown"
    if (root / ".git").exists():
        try:
            done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root,
                                  capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            done = None
        if done is not None and done.returncode == 0:
            git = done.stdout.strip() or "unknown"
    return {"package": package, "git": git}
