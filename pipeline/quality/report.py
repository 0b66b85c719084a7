"""The evaluation report: what was measured, with what, and the numbers per class.

``report.json`` (format ``clipline-eval-report/1``) is the machine-readable record and the
baseline of a later run's gate; ``report.md`` is its table for people. The JSON holds::

    format, metrics_version, created (UTC, ISO 8601)
    model        {name, segmenter, sha256 (of the model file; null when there is none here)}
    options      the output options, as ``clipline run`` normalises them
    code_version {package, git (``git describe --always --dirty``, or "unknown")}
    sets         [{name, path, kind, fingerprint, count, classes: {class: n}}]
    classes      {class: {n, iou, mae, boundary_f, recomposite, recomposite_band}}  means
    overall      {n, iou, mae, boundary_f, recomposite, recomposite_band}  over all images
    images       [{set, stem, class, iou, mae, boundary_f, recomposite, recomposite_band,
                   failed}]
    cutouts      the folder of the cut-outs, relative to the report ("cutouts/<set>/<stem>.png")
    timing       {seconds, cutout_seconds, metrics_seconds, images_per_second}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.quality.metrics import HIGHER_IS_BETTER

REPORT_FORMAT = "clipline-eval-report/1"
METRICS = tuple(HIGHER_IS_BETTER)
TITLES = {"iou": "IoU", "mae": "MAE", "boundary_f": "boundary F", "recomposite": "re-composite",
          "recomposite_band": "band re-composite"}


class InvalidReport(UsageError):
    """A file given as a report that is not one (or not one this code can read)."""

    reason = "invalid_report"


def means(images: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """{n, and the mean of each metric} over ``images`` (records with the metric keys)."""
    rows = list(images)
    out: dict[str, Any] = {"n": len(rows)}
    for metric in METRICS:
        out[metric] = sum(float(r[metric]) for r in rows) / len(rows) if rows else None
    return out


def per_class(images: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """{class: means of its images}, classes in sorted order."""
    names = sorted({str(r["class"]) for r in images})
    return {name: means(r for r in images if r["class"] == name) for name in names}


def load_report(path: Path) -> dict[str, Any]:
    """A report written by ``clipline eval``; :class:`InvalidReport` naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidReport(f"{path}: cannot be read as a report ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise InvalidReport(f"{path}: not a {REPORT_FORMAT} file")
    for key in ("metrics_version", "sets", "classes", "images"):
        if key not in data:
            raise InvalidReport(f"{path}: has no {key!r}")
    problem = _shape_problem(data)
    if problem:
        raise InvalidReport(f"{path}: {problem}")
    return data


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shape_problem(data: Mapping[str, Any]) -> str | None:
    """What is wrong with a report's shape (checked before any model runs), or None."""
    names = METRICS
    sets = data["sets"]
    if not isinstance(sets, list) or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str)
            and isinstance(s.get("fingerprint"), str) for s in sets):
        return "'sets' must be a list of {name, fingerprint, ...}"
    classes = data["classes"]
    if not isinstance(classes, dict):
        return "'classes' must map each class to its means"
    for name, means_ in classes.items():
        if not isinstance(means_, dict) or not all(_number(means_.get(m)) for m in names):
            return f"class {name!r} lacks a number for one of {', '.join(names)}"
    images = data["images"]
    if not isinstance(images, list):
        return "'images' must be a list"
    for row in images:
        if not (isinstance(row, dict) and all(isinstance(row.get(k), str)
                                              for k in ("set", "stem", "class"))
                and all(_number(row.get(m)) for m in names)):
            return f"an image row is not {{set, stem, class, {', '.join(names)}}}: {row!r:.120}"
    return None


def write_report(report: Mapping[str, Any], folder: Path,
                 baseline: Mapping[str, Any] | None = None) -> str:
    """Write ``report.json`` and ``report.md`` into ``folder``; return the Markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2, sort_keys=False) + "\n",
                                        encoding="utf-8")
    table = markdown(report, baseline)
    (folder / "report.md").write_text(table, encoding="utf-8")
    return table


def markdown(report: Mapping[str, Any], baseline: Mapping[str, Any] | None = None) -> str:
    """The table: class | n | IoU | MAE | boundary F | re-composite | band re-composite, then
    the overall row.

    With a ``baseline`` report each cell also says the change, signed as after - before (for
    MAE and both re-composite errors, lower is better)."""
    head = ["class", "n", *(TITLES[m] for m in METRICS)]
    lines = [
        f"Model {report['model']['name']} ({report['model']['segmenter']}), subject "
        f"{report['options'].get('subject', 'all')}, metrics {report['metrics_version']}"
        + (", changes against the baseline in brackets" if baseline else "") + ".",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---", "--:", *("--:" for _ in METRICS)]) + "|",
    ]
    rows = [*report["classes"].items(), ("**overall**", report["overall"])]
    before = dict(baseline["classes"]) if baseline else {}
    if baseline:
        before["**overall**"] = baseline["overall"]
    for name, values in rows:
        cells = [name, str(values["n"])]
        for metric in METRICS:
            cells.append(_cell(values[metric], before.get(name, {}).get(metric)
                               if baseline else None, baseline is not None))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: float | None, old: float | None, compared: bool) -> str:
    if value is None:
        return "-"
    text = f"{value:.4f}"
    if compared:
        text += f" ({value - old:+.4f})" if old is not None else " (new)"
    return text
