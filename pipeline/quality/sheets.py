"""Contact sheets of an evaluation: per class, the images a person should look at.

With a baseline: the K images of the class that changed most, ranked by |Δ IoU| (the mask as a
user would threshold it), ties broken by |Δ MAE| (soft changes that leave the 0.5 line where
it was); columns input | baseline | candidate | ground truth. Without one: the K images of the
class with the lowest IoU; columns input | candidate | ground truth. Cut-outs and the ground
truth (true colours under the true alpha) lie over a checkerboard. A baseline whose cut-outs
are not on this machine (a committed report without pictures) gets a labelled placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.imaging.sheet import Cell, grid_sheet
from pipeline.quality.gate import paired
from pipeline.quality.sets import EvalSet, SetItem, read_truth

DEFAULT_COUNT = 8
NO_BASELINE_PICTURE = "baseline cut-out\nnot available"
NO_CUTOUT = "no cut-out\n(the run failed it)"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

Record = dict[str, Any]


def changed_most(baseline: Mapping[str, Any], candidate: Mapping[str, Any], class_name: str,
                 count: int = DEFAULT_COUNT) -> list[tuple[Record, Record]]:
    """(before, after) records of the ``count`` images of ``class_name`` that changed most:
    by |Δ IoU|, then |Δ MAE|, then |Δ band re-composite| (what changes when only colours do),
    then by set and stem (so the order is stable)."""
    pairs = paired(baseline, candidate, class_name)
    pairs.sort(key=lambda p: (-abs(p[1]["iou"] - p[0]["iou"]), -abs(p[1]["mae"] - p[0]["mae"]),
                              -abs(p[1]["recomposite_band"] - p[0]["recomposite_band"]),
                              p[1]["set"], p[1]["stem"]))
    return pairs[:count]


def worst(candidate: Mapping[str, Any], class_name: str,
          count: int = DEFAULT_COUNT) -> list[Record]:
    """The ``count`` images of ``class_name`` with the lowest IoU (then the highest MAE)."""
    rows = [r for r in candidate["images"] if r["class"] == class_name]
    rows.sort(key=lambda r: (r["iou"], -r["mae"], r["set"], r["stem"]))
    return rows[:count]


def sheet_name(class_name: str) -> str:
    """The file name of a class's sheet: unsafe characters become ``_``."""
    return (_UNSAFE.sub("_", class_name).strip("._") or "class") + ".png"


def write_sheets(folder: Path, sets: Sequence[EvalSet], candidate: Mapping[str, Any],
                 cutouts: Path, baseline: Mapping[str, Any] | None = None,
                 baseline_cutouts: Path | None = None,
                 count: int = DEFAULT_COUNT) -> list[Path]:
    """One PNG per class of ``candidate`` into ``folder``; returns their paths.

    ``cutouts`` / ``baseline_cutouts`` hold ``<set>/<stem>.png`` RGBA cut-outs; the latter
    may be None or lack files (placeholders are drawn)."""
    items = {(s.name, i.stem): (s.name, i) for s in sets for i in s.items}
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for class_name in candidate["classes"]:
        if baseline is not None:
            headers = ["input", "baseline", "candidate", "ground truth"]
            rows = [
                _row(*items[(a["set"], a["stem"])], _label(a, b), cutouts,
                     baseline_cutouts, with_baseline=True)
                for b, a in changed_most(baseline, candidate, class_name, count)
            ]
        else:
            headers = ["input", "candidate", "ground truth"]
            rows = [_row(*items[(a["set"], a["stem"])], _label(a, None), cutouts, None,
                         with_baseline=False)
                    for a in worst(candidate, class_name, count)]
        if not rows:
            continue
        path = folder / sheet_name(class_name)
        grid_sheet(headers, rows).save(path)
        written.append(path)
    return written


def _label(after: Record, before: Record | None) -> str:
    if before is None:
        return (f"{after['stem']}  IoU {after['iou']:.3f}  MAE {after['mae']:.3f}  "
                f"BF {after['boundary_f']:.3f}")
    return (f"{after['stem']}  IoU {before['iou']:.3f} -> {after['iou']:.3f}  "
            f"MAE {before['mae']:.3f} -> {after['mae']:.3f}")


def _row(set_name: str, item: SetItem, label: str, cutouts: Path, baseline_cutouts: Path | None,
         *, with_baseline: bool) -> tuple[str, list[Cell]]:
    with Image.open(item.image) as img:
        source = img.convert("RGB")
    alpha, colour = read_truth(item)
    truth = Image.fromarray(np.dstack([colour, alpha]), "RGBA")
    cells: list[Cell] = [source]
    if with_baseline:
        cells.append(_cutout(baseline_cutouts, set_name, item.stem, NO_BASELINE_PICTURE))
    cells += [_cutout(cutouts, set_name, item.stem, NO_CUTOUT), truth]
    return label, cells


def _cutout(folder: Path | None, set_name: str, stem: str, note: str) -> Cell:
    path = cutout_path(folder, set_name, stem) if folder is not None else None
    if path is None or not path.is_file():
        return note
    with Image.open(path) as img:
        return img.convert("RGBA")


def cutout_path(folder: Path, set_name: str, stem: str) -> Path:
    """Where a cut-out lies under a report's cut-out folder: ``clipline run`` mirrors the set's
    ``images/<stem>.<ext>`` to ``<set>/<stem>.png``."""
    return folder / set_name / f"{stem}.png"
