"""``clipline eval SET...``: quality per class, and the gate before a rollout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from clipline.cli.run import output_options, run_folder
from pipeline import logs
from pipeline.quality.evaluate import SHEETS, evaluate, model_identity, prepare_out
from pipeline.quality.gate import DEFAULT_MAX_DROP, check_comparable, judge
from pipeline.quality.metrics import METRICS_VERSION
from pipeline.quality.report import load_report, write_report
from pipeline.quality.sets import load_set
from pipeline.quality.sheets import DEFAULT_COUNT, write_sheets
from pipeline.settings import Settings

console = Console(stderr=True, soft_wrap=True)


def eval_(
    sets: list[Path] = typer.Argument(..., metavar="SET", exists=True, file_okay=False,
                                      resolve_path=True, help="Evaluation set folders."),
    model: str | None = typer.Option(None, help="Model spec (default: CLIPLINE_MODEL, u2net)."),
    subject: str = typer.Option("all", help="As `clipline run --subject`: all keeps the whole "
                                "mask, main drops small, frame-cut, blurred and doubtful parts."),
    edges: str = typer.Option("keep", help="As `clipline run --edges`: clean estimates the "
                              "foreground colour of soft edge pixels; refine also re-estimates "
                              "alpha along the outline."),
    out: Path = typer.Option(Path("clipline-eval"), file_okay=False, resolve_path=True,
                             help="Folder for report.json, report.md, sheets/ and cutouts/."),
    against: Path | None = typer.Option(None, exists=True, dir_okay=False, resolve_path=True,
                                        help="A baseline report.json: show changes, draw the "
                                        "sheets of what changed most, and run the gate."),
    max_drop: float = typer.Option(DEFAULT_MAX_DROP, min=0.0, help="Gate: the largest "
                                   "worsening of a class mean allowed, per metric."),
    sheet_count: int = typer.Option(DEFAULT_COUNT, min=0, max=100,
                                    help="Images per class on each contact sheet."),
    class_name: str | None = typer.Option(None, "--class", help="Class of real sets (no "
                                          "set.json); default: the set's folder name."),
    allow_train: bool = typer.Option(False, help="Accept composite sets of split 'train' "
                                     "(scores on training objects flatter the model)."),
    batch_size: int = typer.Option(8, min=1, max=256, help="Images per model call."),
    threads: int = typer.Option(0, min=0, help="Decode/encode threads (0: one per CPU)."),
) -> None:
    """Cut out every image of the sets with the real engine and score it, per class.

    A set is a folder of images/ and masks/<stem>.png (the true alpha); a composite set
    (`clipline datasets compose`) adds set.json (the class of each image) and foreground/
    (the true colours). A real set, such as davis-dev, is one class named after its folder.
    The cut-outs are made exactly as `clipline run` makes them (same options, any segmenter
    the settings pick: onnx, or triton with CLIPLINE_SEGMENTER=triton).

    Metrics per image, averaged per class and overall. IoU: the masks thresholded at 0.5,
    intersection over union. MAE: mean |alpha - true alpha| in [0, 1]. Boundary F: the
    outlines of both masks matched within 3 px (precision and recall of boundary pixels).
    Re-composite error: the cut-out laid over a fixed new background, against the true
    foreground laid there by the true alpha; mean |difference| over RGB in [0, 1]. Higher is
    better for IoU and boundary F, lower for MAE and re-composite.

    Writes OUT/report.json (model and its sha256, options, code version, set fingerprints,
    per-class, overall and per-image metrics, timing), OUT/report.md (the table, also printed),
    OUT/cutouts/<set>/ and OUT/sheets/<class>.png: the images that changed most against
    --against (by |change of IoU|, then of MAE: input | baseline | candidate | ground truth),
    or without it the worst by IoU.

    The gate: with --against, a class whose mean got worse than --max-drop in any metric fails
    the run (exit status 1, one line per class and metric with the images that lost most);
    a class of the baseline missing here fails too. A baseline measured on other pictures (set
    fingerprints) or with other metric definitions is refused (exit status 2).
    """
    settings = Settings()
    logs.configure(settings.log_format if settings.log_format != "auto" else "console", "ERROR")
    if model:
        settings = settings.model_copy(update={"model": model})
    options = output_options("png", "rgba", None, False, "0", None, subject, False, edges)
    loaded = [load_set(s, class_name=class_name, allow_train=allow_train) for s in sets]
    baseline = load_report(against) if against is not None else None
    if baseline is not None:
        # Before any model runs: only pictures and definitions can be checked this early.
        check_comparable(baseline, {"metrics_version": METRICS_VERSION,
                                    "sets": [{"name": s.name, "fingerprint": s.fingerprint}
                                             for s in loaded]})
    prepare_out(out, loaded, against)
    workers = threads or os.cpu_count() or 2

    def cut(src: Path, dst: Path) -> None:
        run_folder(src, dst, options, settings, model=settings.model, batch_size=batch_size,
                   threads=workers, show_progress=console.is_terminal)

    report = evaluate(loaded, out, cut, model=model_identity(settings),
                      options=options.normalised())
    failed = [f"{r['set']}/{r['stem']}" for r in report["images"] if r["failed"]]
    if failed:
        console.print(f"{len(failed)} images had no cut-out (scored as empty): "
                      + ", ".join(failed[:10]), markup=False, highlight=False)
    print(write_report(report, out, baseline), end="")
    baseline_cutouts = (against.parent / baseline["cutouts"]
                        if against is not None and baseline is not None else None)
    if sheet_count:
        write_sheets(out / SHEETS, loaded, report, out / report["cutouts"], baseline,
                     baseline_cutouts, sheet_count)
    console.print(f"{report['overall']['n']} images in {report['timing']['seconds']:.1f} s; "
                  f"report in {out / 'report.json'}", markup=False, highlight=False)
    if baseline is not None:
        _gate(baseline, report, max_drop)


def _gate(baseline: dict[str, Any], report: dict[str, Any], max_drop: float) -> None:
    verdict = judge(baseline, report, max_drop)
    for name in verdict.only_in_candidate:
        console.print(f"class {name}: new (not in the baseline)", markup=False)
    for regression in verdict.regressions:
        console.print(f"gate: {regression.line()}", markup=False, highlight=False)
    if not verdict.passed:
        raise typer.Exit(1)
    console.print(f"gate: passed (no class worse by more than {max_drop})", markup=False)
