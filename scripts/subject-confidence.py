"""How sure a model is of the subject: mean fused probability inside and outside the true mask.

    python scripts/subject-confidence.py CHECKPOINT [--base ONNX] [--per-class 8] [--seed 123]

Draws, per composite class, a batch from the train side of the composer's sources (as `clipline
train` does, without augmentation), runs the released model (--base, u2netp's ONNX) and the
checkpoint's module on it, and prints per class: IoU of the raw fused mask at 0.5, the mean
probability where the true alpha is over 0.5 ("fg") and where it is not ("bg"). A fine-tune that
turns subjects down shows as fg falling while bg falls too (docs/QUALITY.md, "Fine-tuning
u2netp"). Sources: CLIPLINE_SOURCES_DIR, default ~/.cache/clipline/sources
(scripts/composite-sources.sh). Needs the train extra (torch).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from pipeline.models import U2NETP
from pipeline.settings import Settings
from training.data import Sources, TrainStream
from training.export import model_from_checkpoint
from training.u2net import U2Net, from_onnx

CLASSES = ("product-plain", "product-scene", "illustration", "multi")


def _scores(model: U2Net, images: torch.Tensor, truth: np.ndarray) -> str:
    with torch.no_grad():
        p = model(images)[0][:, 0].numpy()
    q = p > 0.5
    iou = np.mean([(q[i] & truth[i]).sum() / max((q[i] | truth[i]).sum(), 1)
                   for i in range(len(truth))])
    return f"IoU {iou:.3f} fg {p[truth].mean():.3f} bg {p[~truth].mean():.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--base", type=Path, default=None,
                        help="The released u2netp's ONNX (default: in the models folder).")
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    root = Path(os.environ.get("CLIPLINE_SOURCES_DIR", Path.home() / ".cache/clipline/sources"))
    stream = TrainStream(Sources(
        objects={"photo": root / "objects-photo", "clipart": root / "objects-clipart"},
        backgrounds={"photo": root / "backgrounds-photo"}), seed=args.seed)
    base = from_onnx(args.base or Settings().model_folder / U2NETP.filename, "u2netp").eval()
    tuned, _ = model_from_checkpoint(args.checkpoint)
    print(f"{'class':<14} {'released':<34} checkpoint")
    for name in CLASSES:
        batch = stream.batch({name: 1}, args.per_class, 0.0)
        images, truth = torch.from_numpy(batch.images), batch.alpha[:, 0] > 0.5
        print(f"{name:<14} {_scores(base, images, truth):<34} {_scores(tuned, images, truth)}")


if __name__ == "__main__":
    main()
