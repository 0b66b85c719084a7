"""u2netp on the CPU: ONNX Runtime (what workers and `clipline run` use) against OpenVINO.

    .venv/bin/python -m bench.runtimes [--threads 2] [--seconds 20] [--models-dir DIR]

Same ONNX file, same inputs (product photos at the model's 320x320, made as the engine makes
them), one image per call, ``--threads`` intra-op threads each. The runtimes take turns call
by call, so load from other users of the machine falls on all of them; wall time per call is
printed as the median. OpenVINO runs twice: at f32 (``INFERENCE_PRECISION_HINT=f32``, masks
expected equal to ONNX Runtime's within float rounding) and at its default precision on this
CPU (bf16 where the CPU has AMX or AVX-512 BF16, else f32), whose masks are compared with
ONNX Runtime's by IoU (``bench.masks``: at alpha 128 of the masks quantised as the engine
quantises them) and max |diff|: a lower precision may only be used through the quality gate
(``clipline eval``).

Prints one line per runtime and the ratios ONNX Runtime time ÷ runtime time (above 1: faster
than ONNX Runtime). OpenVINO is in the ``bench`` extra (``pip install -e '.[bench]'``; ``make
venv`` installs it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from bench.masks import iou
from bench.vs_rembg import DATA, machine_line
from pipeline.errors import ModelError
from pipeline.imaging.decode import model_input_from_rgba
from pipeline.model_fetch import pull
from pipeline.models import U2NETP
from pipeline.parts import quantise

Run = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def inputs(products: Path, count: int) -> list[npt.NDArray[np.float32]]:
    """``count`` [1, 3, 320, 320] float32 tensors: the engine's model input of each photo,
    normalised by U2NETP's spec as the ONNX Runtime segmenter feeds it."""
    paths = sorted(products.glob("*.webp"))[:count]
    if not paths:
        raise SystemExit(f"bench.runtimes: no .webp files in {products}")
    out = []
    for path in paths:
        with Image.open(path) as im:
            rgba = np.asarray(im.convert("RGBA"))
        pixels = model_input_from_rgba(rgba, U2NETP.input_size)
        out.append(U2NETP.normalisation.to_nchw(pixels[np.newaxis]))
    return out


def onnx_runtime(model: Path, threads: int) -> Run:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(session.run(None, {name: x})[0], np.float32)
    return run


def openvino(model: Path, threads: int, precision: str | None) -> tuple[Run, str]:
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(str(model), "CPU", config)
    used = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    request = compiled.create_infer_request()

    def run(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(request.infer([x])[0], np.float32)
    return run, used


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--threads", type=int, default=2, help="intra-op threads each (default 2)")
    p.add_argument("--seconds", type=float, default=20.0,
                   help="time each runtime about this long (default 20)")
    p.add_argument("--images", type=int, default=8, help="distinct inputs (default 8)")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="where u2netp.onnx is, or is pulled to (default: Clipline's models folder)")
    args = p.parse_args(argv)
    if args.threads < 1 or args.seconds <= 0 or args.images < 1:
        p.error("--threads and --images must be >= 1, --seconds > 0")
    from pipeline.settings import Settings

    try:
        model = pull(U2NETP, args.models_dir or Settings().model_folder).path
    except ModelError as exc:
        print(f"bench.runtimes: {exc}", file=sys.stderr)
        return 2
    batch = inputs(DATA / "products", args.images)
    ov_f32, _ = openvino(model, args.threads, "f32")
    ov_default, default_precision = openvino(model, args.threads, None)
    runtimes: dict[str, Run] = {
        "onnxruntime f32": onnx_runtime(model, args.threads),
        "openvino f32": ov_f32,
        f"openvino default ({default_precision})": ov_default,
    }
    # The fused mask, [1, 1, 320, 320] from both runtimes; this pass is the warm-up too.
    masks = {name: [run(x)[0, 0] for x in batch] for name, run in runtimes.items()}
    times: dict[str, list[float]] = {name: [] for name in runtimes}
    deadline = time.monotonic() + args.seconds * len(runtimes)
    i = 0
    while time.monotonic() < deadline or i < len(batch):
        x = batch[i % len(batch)]
        for name, run in runtimes.items():
            start = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - start)
        i += 1
    print(machine_line())
    threads = f"{args.threads} thread{'s' if args.threads > 1 else ''}"
    print(f"u2netp, 1 image per call, {threads}, {i} calls each, interleaved")
    ref_ms = statistics.median(times["onnxruntime f32"]) * 1000
    for name in runtimes:
        ms = statistics.median(times[name]) * 1000
        # At alpha 128, on the masks as the engine quantises them (bench.masks' IoU).
        ious = [iou(quantise(m), quantise(r))
                for m, r in zip(masks[name], masks["onnxruntime f32"], strict=True)]
        diff = max(float(np.abs(m - r).max())
                   for m, r in zip(masks[name], masks["onnxruntime f32"], strict=True))
        print(f"{name:28} {ms:8.1f} ms   ratio onnxruntime/this {ref_ms / ms:5.2f}   "
              f"mask IoU vs onnxruntime min {min(ious):.4f}   max |diff| {diff:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
