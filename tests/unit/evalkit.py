"""Tiny evaluation sets and reports for the tests of `clipline eval` (made here, never copied)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.quality.metrics import METRICS_VERSION
from pipeline.quality.report import REPORT_FORMAT, means, per_class

SIZE = (64, 48)  # width, height


def square_image(left: int, top: int, side: int = 20,
                 colour: tuple[int, int, int] = (200, 30, 30)) -> tuple[np.ndarray, np.ndarray]:
    """(RGB [H, W, 3], alpha [H, W]): a coloured square on white, and its exact mask."""
    w, h = SIZE
    rgb = np.full((h, w, 3), 255, np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    rgb[top:top + side, left:left + side] = colour
    alpha[top:top + side, left:left + side] = 255
    return rgb, alpha


def real_set(root: Path, count: int = 3) -> Path:
    """images/*.jpg-free real set (PNG inputs, binary masks), no set.json."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        rgb, alpha = square_image(8 + 6 * i, 6 + 3 * i)
        Image.fromarray(rgb).save(root / "images" / f"shot{i}.png")
        Image.fromarray(alpha, "L").save(root / "masks" / f"shot{i}.png")
    return root


def composite_set(root: Path, classes: Mapping[str, int], split: str = "eval") -> Path:
    """A composite set with set.json and foreground/, ``classes``: {name: images}."""
    for sub in ("images", "masks", "foreground"):
        (root / sub).mkdir(parents=True)
    items: list[dict[str, Any]] = []
    n = 0
    for name, count in classes.items():
        for _ in range(count):
            stem = f"{name}-{n:03d}"
            rgb, alpha = square_image(6 + 5 * (n % 6), 4 + 4 * (n % 5),
                                      colour=(30 + 40 * (n % 5), 60, 200))
            fg = rgb.copy()
            Image.fromarray(rgb).save(root / "images" / f"{stem}.png")
            Image.fromarray(alpha, "L").save(root / "masks" / f"{stem}.png")
            Image.fromarray(fg).save(root / "foreground" / f"{stem}.png")
            items.append({"stem": stem, "class": name, "object": f"obj{n}",
                          "background": "white", "distractor": None})
            n += 1
    (root / "set.json").write_text(json.dumps({
        "format": "clipline-set/1", "name": root.name, "seed": 7, "split": split,
        "size": list(SIZE), "classes": list(classes), "items": items, "sources": {},
        "code_version": "test",
    }))
    return root


def report(images: Sequence[Mapping[str, Any]], *, fingerprint: str = "f" * 64,
           set_name: str = "s") -> dict[str, Any]:
    """A report as `clipline eval` writes it, from image records (set/stem/class/metrics)."""
    rows = [{"set": set_name, "failed": False, **r} for r in images]
    return {
        "format": REPORT_FORMAT, "metrics_version": METRICS_VERSION,
        "model": {"name": "m", "segmenter": "fake", "sha256": None},
        "options": {"subject": "all"},
        "sets": [{"name": set_name, "fingerprint": fingerprint}],
        "classes": per_class(rows), "overall": means(rows), "images": rows,
        "cutouts": "cutouts",
    }


def image(stem: str, class_name: str, iou: float = 0.9, mae: float = 0.05,
          boundary_f: float = 0.8, recomposite: float = 0.03,
          recomposite_band: float = 0.1) -> dict[str, Any]:
    return {"stem": stem, "class": class_name, "iou": iou, "mae": mae,
            "boundary_f": boundary_f, "recomposite": recomposite,
            "recomposite_band": recomposite_band}
