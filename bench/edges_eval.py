"""Edge options scored on an earlier evaluation's cut-outs, without running the model again.

    python -m bench.edges_eval BASELINE_DIR SET... --edges refine --out OUT

``BASELINE_DIR`` is the ``--out`` of a ``clipline eval`` run with ``--edges keep`` and
``--subject all``: its cut-outs' alpha is the model's mask at the image's size. Each image is
decoded again and passed with that mask through ``pipeline.process.finish``, the code
``clipline run`` runs after inference, with the asked ``--edges``; the result is scored and
gated against the baseline exactly as ``clipline eval --against BASELINE_DIR/report.json`` does
(report.json, report.md and sheets in ``OUT``). On a CPU shared with other work this saves the
model's time (u2net: about 2.2x u2netp's) for each option measured; ``--edges keep`` reproduces
the baseline's cut-outs byte for byte, which is the check that nothing else differs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.options import OutputOptions
from pipeline.process import finish, prepare
from pipeline.quality.evaluate import CUTOUTS, SHEETS, STATE, evaluate, prepare_out
from pipeline.quality.gate import check_comparable, judge
from pipeline.quality.report import load_report, write_report
from pipeline.quality.sets import load_set
from pipeline.quality.sheets import write_sheets

MODEL_SIDE = 320  # the model input prepare() makes; unused here but for the decode


def replay(baseline_cutouts: Path, options: OutputOptions, model: str) -> Any:
    """A ``cut`` for ``evaluate``: each image's mask is its baseline cut-out's alpha."""

    def cut(src: Path, dst: Path) -> None:
        (dst / STATE).mkdir(parents=True, exist_ok=True)
        for image in sorted(p for p in src.iterdir() if p.is_file()):
            base = baseline_cutouts / f"{image.stem}.png"
            if not base.is_file():
                continue  # the baseline failed it: so does the replay (scored as empty)
            with Image.open(base) as kept:
                alpha = np.asarray(kept.convert("RGBA"), dtype=np.uint8)[..., 3]
            # upscale_mask truncates mask * 255: + 0.5 gives back each byte exactly.
            mask = (alpha.astype(np.float32) + np.float32(0.5)) / np.float32(255.0)
            prepared = prepare(image.read_bytes(), (MODEL_SIDE, MODEL_SIDE))
            (dst / f"{image.stem}.png").write_bytes(finish(prepared, mask, options,
                                                           model=model).data)

    return cut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("sets", type=Path, nargs="+")
    parser.add_argument("--edges", default="refine")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-drop", type=float, default=0.005)
    args = parser.parse_args()
    baseline = load_report(args.baseline / "report.json")
    if baseline["options"].get("subject", "all") != "all" or \
            baseline["options"].get("edges", "keep") != "keep":
        raise SystemExit("the baseline must be measured with --subject all --edges keep")
    sets = [load_set(s) for s in args.sets]
    options = OutputOptions.parse({"edges": args.edges})
    prepare_out(args.out, sets, args.baseline / "report.json")
    report: dict[str, Any] = {}
    cutouts = args.baseline / baseline["cutouts"]
    for eval_set in sets:  # one set at a time: each has its own baseline folder
        part = evaluate([eval_set], args.out, replay(cutouts / eval_set.name, options,
                                                      baseline["model"]["name"]),
                        model=baseline["model"], options=options.normalised())
        if report:
            report["images"] += part["images"]
            report["sets"] += part["sets"]
            report["timing"]["cutout_seconds"] += part["timing"]["cutout_seconds"]
        else:
            report = part
    from pipeline.quality.report import means, per_class
    report["classes"], report["overall"] = per_class(report["images"]), means(report["images"])
    report["replayed_from"] = str(args.baseline)
    check_comparable(baseline, report)
    print(write_report(report, args.out, baseline), end="")
    write_sheets(args.out / SHEETS, sets, report, args.out / CUTOUTS, baseline, cutouts)
    n = report["overall"]["n"]
    print(f"{n} images; edges {report['timing']['cutout_seconds'] / n * 1000:.0f} ms/image "
          "(decode, edges, compose, encode)")
    verdict = judge(baseline, report, args.max_drop)
    for regression in verdict.regressions:
        print(f"gate: {regression.line()}")
    print("gate: passed" if verdict.passed else "gate: FAILED")


if __name__ == "__main__":
    main()
