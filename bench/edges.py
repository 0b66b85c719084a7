"""Clean and refined edges: their cost per 2048² image, beside the engine's own time.

    CLIPLINE_MODELS_DIR=/tmp/clipline-models python -m bench.edges [--count 4]

Product photos are upscaled to 2048x2048 and encoded as PNG; in one process, each image is cut
out with the default options (decode, u2netp on ONNX Runtime, compose, encode: the engine's time)
and then, on u2netp's mask at full size, ``decontaminate`` runs at each working size. Printed:
ms per image for each, the ratio to the engine's time, and how far each working size's colours
are from the full-size estimate inside the soft band (mean |difference| in 0..255). Then
``edges=refine`` at its defaults: ``refine_alpha`` alone, and with the clean step after it (what
the option costs), each as ms and as a ratio to the engine's time.

A drawn case with a known answer (a red disc with a 24 px soft edge over green, 2048²) gives the
band's error against the true red for each working size.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline import bootstrap
from pipeline.imaging.compose import multiply_alpha
from pipeline.imaging.edges import decontaminate, soft_band
from pipeline.imaging.refine import refine_alpha
from pipeline.options import OutputOptions
from pipeline.process import cut_out, prepare
from pipeline.settings import Settings
from pipeline.subject import find_subject

SIDE = 2048
FULL = 1 << 20  # a working size no image reaches: the estimation at full size
WORK_SIDES = (256, 512, 1024, FULL)
DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "products"


def _png(path: Path) -> bytes:
    with Image.open(path) as img:
        big = img.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _ms(fn: object) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()  # type: ignore[operator]
    return (time.perf_counter() - start) * 1000.0, result


def drawn(side: int = SIDE) -> tuple[np.ndarray, np.ndarray]:
    """A red disc with a soft edge over green: (rgba, alpha); true foreground is pure red."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    r = np.hypot(x - side / 2, y - side / 2)
    alpha = np.clip((side * 0.3 - r) / 24.0 + 0.5, 0.0, 1.0)
    fg, bg = np.array([220, 30, 30], np.float32), np.array([20, 180, 40], np.float32)
    rgb = np.rint(fg * alpha[..., None] + bg * (1 - alpha[..., None])).astype(np.uint8)
    rgba = np.dstack([rgb, np.full((side, side), 255, np.uint8)])
    return rgba, np.rint(alpha * 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    args = parser.parse_args()
    settings = Settings(model="u2netp")  # the model the figures in the docstring are of
    segmenter = bootstrap.segmenter(settings)
    files = sorted(p for p in args.images.iterdir() if p.suffix in {".webp", ".jpg", ".png"})
    images = [_png(p) for p in files[: args.count]]
    decontaminate(*drawn(64))  # import pymatting and load numba's cache outside the timings
    engine: list[float] = []
    cost: dict[int, list[float]] = {w: [] for w in WORK_SIDES}
    drift: dict[int, list[float]] = {w: [] for w in WORK_SIDES}
    refine_ms: list[float] = []
    refine_clean_ms: list[float] = []
    options = OutputOptions()
    for data in images:
        cut_out(data, options, segmenter, model=settings.model)  # warm
        ms, _ = _ms(lambda d=data: cut_out(d, options, segmenter, model=settings.model))
        engine.append(ms)
        prepared = prepare(data, segmenter.input_size)
        mask = segmenter.predict(prepared.model_input[np.newaxis])[0]
        subject = find_subject(mask, prepared.decoded.size, policy="all", strict_empty=False)
        rgba = prepared.decoded.rgba
        alpha = multiply_alpha(subject.alpha, rgba[..., 3])
        band = soft_band(alpha)
        results = {}
        for w in WORK_SIDES:
            start = time.perf_counter()
            out = decontaminate(rgba, alpha, work_side=w)
            ms = (time.perf_counter() - start) * 1000.0
            cost[w].append(ms)
            results[w] = out
        start = time.perf_counter()
        refined = refine_alpha(rgba[..., :3], alpha)
        refine_ms.append((time.perf_counter() - start) * 1000.0)
        decontaminate(rgba, refined)
        refine_clean_ms.append((time.perf_counter() - start) * 1000.0)
        for w in WORK_SIDES:
            diff = np.abs(results[w][band, :3].astype(np.int16) - results[FULL][band, :3])
            drift[w].append(float(diff.mean()) if band.any() else 0.0)
    base = statistics.median(engine)
    print(f"{len(images)} product images at {SIDE}x{SIDE}, {settings.model}; median ms/image")
    print(f"engine (decode, infer, compose, encode): {base:.0f} ms")
    truth_rgba, truth_alpha = drawn()
    truth_band = soft_band(truth_alpha)
    raw_err = np.abs(truth_rgba[truth_band, :3].astype(np.int16) - (220, 30, 30)).mean()
    print(f"drawn disc: band |colour - true red| before: {raw_err:.1f}")
    for w in WORK_SIDES:
        name = "full" if w == FULL else str(w)
        ms = statistics.median(cost[w])
        cleaned = decontaminate(truth_rgba, truth_alpha, work_side=w)
        err = np.abs(cleaned[truth_band, :3].astype(np.int16) - (220, 30, 30)).mean()
        print(f"edges work_side={name:>5}: {ms:6.0f} ms  ({ms / base:.2f}x engine); "
              f"band drift from full {statistics.mean(drift[w]):.2f}; drawn disc error {err:.1f}")
    for name, times in (("refine alpha only", refine_ms),
                        ("refine (alpha + clean)", refine_clean_ms)):
        ms = statistics.median(times)
        print(f"edges {name}: {ms:6.0f} ms  ({ms / base:.2f}x engine)")


if __name__ == "__main__":
    main()
