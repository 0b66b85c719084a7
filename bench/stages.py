"""Engine CPU per image outside inference, stage by stage, beside the choices it replaced.

    .venv/bin/python -m bench.stages [--count 12] [--side 2048] [--repeat 3] [--models-dir DIR]

The images are JPEGs made as ``bench.vs_rembg`` makes them (the product photos upscaled to
side x side, quality 90). Every stage runs through the engine's own functions, in this thread,
timed in CPU seconds of this thread (``time.thread_time``; ONNX Runtime gets one intra-op
thread, so its work is this thread's too), and each image goes through every stage and every
reference in turn, ``--repeat`` times, so machine load falls on all of them alike:

    decode        pipeline.imaging.decode.decode: the full upright RGBA, for the composite
    model input   model_input(decoded, (320, 320)): LANCZOS from that decode
    infer         u2netp through ONNX Runtime, one thread (the yardstick, not engine work)
    mask          pipeline.subject.find_subject: upscale to the source size, bbox, measures
    compose       pipeline.imaging.compose.compose: RGBA, RGB zeroed under transparency
    encode        pipeline.imaging.encode.encode: lossless PNG

References, on the same pixels in the same loop (what the engine did before issue 16, and
one alternative it did not take):

    decode, Pillow tobytes copy           the previous copy out of Pillow (np.asarray)
    model input, gap 3                    the previous model-input resize (reducing gap 3)
    mask, Pillow BILINEAR                 the previous upscale (the upscale alone)
    encode, Pillow PNG l1 Z_RLE           the previous encoder (zlib level 1, Z_RLE)
    model input from the JPEG's DCT draft a second, 1/4-size decode instead of resizing the
                                          full one (``decode_for_model``)

It prints the median milliseconds per stage, the engine's total outside inference, and the
ratios: engine ÷ the previous engine (each replaced stage timed the old way), and engine ÷
inference. Goal (issue 16): engine CPU outside inference ≤ 60 ms per 2048² image.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from bench.vs_rembg import DATA, BenchError, machine_line, make_images
from pipeline.adapters.segmenters.onnx_runtime import OnnxSegmenter
from pipeline.errors import ModelError
from pipeline.imaging.compose import compose
from pipeline.imaging.decode import DEFAULT_LIMITS, _load, decode, decode_for_model, model_input
from pipeline.imaging.encode import PNG_LEVEL, Z_RLE, encode
from pipeline.model_fetch import pull
from pipeline.models import U2NETP
from pipeline.options import OutputOptions
from pipeline.subject import find_subject

GOAL_MS = 60.0
GOAL_SIDE = 2048
ENGINE = ("decode", "model input", "mask", "compose", "encode")
PREVIOUS = {"decode": "decode, Pillow tobytes copy", "model input": "model input, gap 3",
            "mask": "mask, Pillow BILINEAR", "encode": "encode, Pillow PNG l1 Z_RLE"}
T = TypeVar("T")


def timed(samples: dict[str, list[float]], name: str, work: Callable[[], T]) -> T:
    """Run ``work``, add its thread CPU time in ms to ``samples[name]``, return its result."""
    start = time.thread_time()
    result = work()
    samples[name].append((time.thread_time() - start) * 1000)
    return result


def previous_decode(data: bytes) -> np.ndarray[Any, Any]:
    """The decode as it was: the same checks and colour work, then ``np.asarray``'s copy."""
    image, _, _ = _load(data, DEFAULT_LIMITS, None)
    return np.asarray(image if image.mode == "RGBA" else image.convert("RGBA"))


def previous_model_input(rgba: np.ndarray[Any, Any], size: tuple[int, int]) -> np.ndarray[Any, Any]:
    """The opaque model-input resize as it was: LANCZOS with a reducing gap of 3."""
    height, width = rgba.shape[:2]
    pixels = np.ascontiguousarray(rgba)
    rgbx = Image.frombuffer("RGBX", (width, height), pixels, "raw", "RGBX", 0, 1)
    small = rgbx.resize((size[1], size[0]), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(small.convert("RGB"))


def pillow_upscale(mask: np.ndarray[Any, Any], size: tuple[int, int]) -> np.ndarray[Any, Any]:
    small = (np.clip(mask, 0.0, 1.0) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BILINEAR))


def pillow_png(pixels: np.ndarray[Any, Any]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=PNG_LEVEL, compress_type=Z_RLE)
    return buffer.getvalue()


def one_image(data: bytes, segmenter: OnnxSegmenter, samples: dict[str, list[float]],
              sizes: dict[str, list[int]]) -> None:
    """Every stage and every reference once on one image's bytes."""
    options = OutputOptions.parse({"edges": "keep"})
    size = segmenter.input_size
    decoded = timed(samples, "decode", lambda: decode(data))
    timed(samples, PREVIOUS["decode"], lambda: previous_decode(data))
    pixels = timed(samples, "model input", lambda: model_input(decoded, size))
    timed(samples, PREVIOUS["model input"], lambda: previous_model_input(decoded.rgba, size))
    timed(samples, "model input from DCT draft", lambda: decode_for_model(data, size))
    mask = timed(samples, "infer", lambda: segmenter.predict(pixels[np.newaxis])[0])
    subject = timed(samples, "mask", lambda: find_subject(mask, decoded.size))
    timed(samples, PREVIOUS["mask"], lambda: pillow_upscale(mask, decoded.size))
    composite = timed(samples, "compose",
                      lambda: compose(decoded.rgba, subject.alpha, options, bbox=subject.bbox))
    png = timed(samples, "encode", lambda: encode(composite, "png"))
    old = timed(samples, PREVIOUS["encode"], lambda: pillow_png(composite.pixels))
    if not np.array_equal(np.asarray(Image.open(io.BytesIO(png))), composite.pixels):
        raise BenchError("the PNG does not decode back to the composite")
    sizes["encode"].append(len(png))
    sizes[PREVIOUS["encode"]].append(len(old))


def report(samples: dict[str, list[float]], sizes: dict[str, list[int]], images: int,
           side: int) -> None:
    med = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{images} JPEGs {side}x{side}; median CPU ms per image, one thread")
    print(f"{'stage':32} {'ms':>8}")
    for name in (*ENGINE, "infer", *PREVIOUS.values(), "model input from DCT draft"):
        extra = ""
        if name in sizes:
            extra = f"   {statistics.mean(sizes[name]) / 1e6:.2f} MB"
        print(f"{name:32} {med[name]:8.1f}{extra}")
    engine = sum(med[name] for name in ENGINE)
    before = engine - sum(med[name] - med[old] for name, old in PREVIOUS.items())
    verdict = ("met" if engine <= GOAL_MS else "not met") if side == GOAL_SIDE else \
        f"the goal is for {GOAL_SIDE}x{GOAL_SIDE}"
    print(f"engine outside inference: {engine:.1f} ms (goal <= {GOAL_MS:g}: {verdict})")
    print(f"previous engine (each replaced stage timed the old way): {before:.1f} ms")
    print(f"ratio engine/previous: {engine / before:.2f}")
    print(f"ratio engine/infer: {engine / med['infer']:.3f}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--count", type=int, default=12, help="images (default 12)")
    p.add_argument("--side", type=int, default=2048, help="their side in px (default 2048)")
    p.add_argument("--repeat", type=int, default=3,
                   help="passes over the images; the median is over all (default 3)")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="where u2netp.onnx is, or is pulled to (default: Clipline's models "
                        "folder)")
    args = p.parse_args(argv)
    if args.count < 1 or args.side < 8 or args.repeat < 1:
        p.error("--count and --repeat must be >= 1, --side >= 8")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from pipeline.settings import Settings

    models_dir = args.models_dir or Settings().model_folder
    try:
        model = pull(U2NETP, models_dir).path
        segmenter = OnnxSegmenter(model, U2NETP, intra_op_threads=1, allow_spinning=False)
        with tempfile.TemporaryDirectory(prefix="clipline-stages-") as tmp:
            names = make_images(DATA / "products", Path(tmp), args.count, args.side, 90)
            blobs = [(Path(tmp) / name).read_bytes() for name in names]
    except (BenchError, ModelError) as exc:
        print(f"bench.stages: {exc}", file=sys.stderr)
        return 2
    print(machine_line())
    samples: dict[str, list[float]] = defaultdict(list)
    sizes: dict[str, list[int]] = defaultdict(list)
    one_image(blobs[0], segmenter, defaultdict(list), defaultdict(list))  # warm-up, not counted
    for _ in range(args.repeat):
        for data in blobs:
            one_image(data, segmenter, samples, sizes)
    report(samples, sizes, len(blobs), args.side)
    return 0


if __name__ == "__main__":
    sys.exit(main())
