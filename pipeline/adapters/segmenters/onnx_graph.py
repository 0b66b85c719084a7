"""Rewrite a segmentation model's ONNX graph into the form Triton serves, and check it.

The rewritten graph:

- takes ``image``: uint8 [batch, H, W, 3] RGB, any batch size (the axis is named ``batch``);
- does the spec's normalisation inside the graph: Cast to float, the per-image max
  (ReduceMax over H, W, C, floored like rembg), Div, Sub mean, Div std, Transpose to NCHW;
- returns only ``mask``: float32 [batch, H, W], min-max normalised per image inside the graph
  (ReduceMin/ReduceMax, Sub, Div), so a client gets the final mask and sends/receives nothing
  else. Folding the min-max in costs two reductions and keeps Triton's answer identical to the
  in-process one.

Metadata ``clipline.form`` = ``uint8_nhwc`` and ``clipline.postprocess`` = ``min_max`` mark it.
The new nodes use the model's own opset (ReduceMax's ``axes`` is an attribute before opset 18 and
an input from 18 on). Shapes are cleared from ``value_info`` because the export recorded them
with batch 1; nodes that fed only the dropped outputs are pruned.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper

from pipeline.adapters.segmenters.onnx_runtime import POSTPROCESS_KEY, OnnxSegmenter
from pipeline.errors import ModelError
from pipeline.models import ModelSpec, record_sha256, uint8_form

INPUT_NAME = "image"
OUTPUT_NAME = "mask"
BATCH_AXIS = "batch"
FORM_KEY = "clipline.form"
FORM = "uint8_nhwc"
DEFAULT_TOLERANCE = 1e-4
_P = "clipline/"  # prefix of every tensor and node the rewrite adds
_MASK_EPS = 1e-6


def to_uint8_nhwc(src_path: Path, dst_path: Path, spec: ModelSpec) -> None:
    """Write ``src_path``'s graph, rewritten as described above, to ``dst_path``."""
    model = _load(src_path)
    graph = model.graph
    opset = _default_opset(model)
    old_input = _image_input(graph, spec, src_path)
    if spec.output_index >= len(graph.output):
        raise ModelError(
            f"{src_path} has {len(graph.output)} outputs; spec wants #{spec.output_index}"
        )
    old_output = graph.output[spec.output_index]
    h, w = spec.input_size

    pre_nodes, pre_consts = _normalise_nodes(spec, opset, old_input.name)
    post_nodes, post_consts = _min_max_nodes(old_output, opset, (h, w))
    kept = [*pre_nodes, *graph.node, *post_nodes]
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend([*pre_consts, *post_consts])

    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [BATCH_AXIS, h, w, 3])
    )
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_AXIS, h, w])
    )
    # Recorded intermediate shapes carry the export's batch of 1: stale once the batch is free.
    del graph.value_info[:]
    _prune(graph)
    _set_metadata(model, {FORM_KEY: FORM, POSTPROCESS_KEY: "min_max"})
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"the rewritten graph of {src_path} is invalid: {exc}") from exc
    _save_atomically(model, dst_path)


@dataclass(frozen=True)
class Verification:
    """How far the rewritten graph's masks are from the original's, on the same images."""

    max_abs: float
    mean_abs: float
    images: int
    batch_sizes: tuple[int, ...]
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.tolerance


def verify(
    original: Path,
    rewritten: Path,
    spec: ModelSpec,
    images: npt.NDArray[np.uint8],
    *,
    batch_sizes: tuple[int, ...] = (1, 3, 8),
    tolerance: float = DEFAULT_TOLERANCE,
) -> Verification:
    """Run both graphs on ``images``; the rewritten one in batches of each size (capped at the
    number of images), each compared with the original's per-image masks."""
    reference = OnnxSegmenter(original, spec).predict(images)
    candidate = OnnxSegmenter(rewritten, uint8_form(spec))
    sizes = tuple(sorted({min(b, len(images)) for b in batch_sizes}))
    worst, total, count = 0.0, 0.0, 0
    for size in sizes:
        for start in range(0, len(images), size):
            got = candidate.predict(images[start : start + size])
            diff = np.abs(got - reference[start : start + size])
            worst = max(worst, float(diff.max()))
            total += float(diff.sum(dtype=np.float64))
            count += diff.size
    return Verification(worst, total / max(count, 1), len(images), sizes, tolerance)


def export_uint8(
    src_path: Path,
    spec: ModelSpec,
    images: npt.NDArray[np.uint8],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> tuple[Path, Verification]:
    """Rewrite ``src_path`` to ``<name>.uint8.onnx`` beside it, verify it on ``images`` and only
    then put it in place (with its recorded sha256). Over tolerance → ``ModelError``."""
    dst = src_path.with_name(uint8_form(spec).filename)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        to_uint8_nhwc(src_path, tmp, spec)
        report = verify(src_path, tmp, spec, images, tolerance=tolerance)
        if not report.ok:
            raise ModelError(
                f"the rewritten graph differs from {src_path.name} by up to {report.max_abs:.3g}"
                f" (tolerance {tolerance:g}); nothing written"
            )
        tmp.chmod(0o644)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    record_sha256(dst)
    return dst, report


def sample_images(size: tuple[int, int], count: int = 8, seed: int = 0) -> npt.NDArray[np.uint8]:
    """Deterministic test pictures: shapes on plain and noisy grounds, dark and bright."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((count, h, w, 3), dtype=np.uint8)
    for i in range(count):
        ground = rng.integers(0, 256, 3) if i % 2 else np.array([250, 250, 250])
        img = np.broadcast_to(ground, (h, w, 3)).astype(np.float32)
        img += rng.normal(0, 4.0 * (i % 3), (h, w, 3))
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        r = rng.uniform(0.15, 0.3) * min(h, w)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[inside] = rng.integers(0, 256, 3)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    if count:
        out[-1] //= 4  # a dark picture: the per-image max matters
    return out


# -- graph surgery --------------------------------------------------------------------------


def _load(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except (OSError, DecodeError) as exc:
        raise ModelError(f"cannot read the ONNX model {path}: {exc}") from exc


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ModelError("the model imports no default ONNX opset")


def _image_input(graph: onnx.GraphProto, spec: ModelSpec, path: Path) -> onnx.ValueInfoProto:
    # Old exporters list initializers among the inputs too; the image is the one that is not.
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    h, w = spec.input_size
    if len(inputs) != 1:
        raise ModelError(f"{path} has {len(inputs)} inputs; the rewrite needs exactly one")
    tensor = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if tensor.elem_type != TensorProto.FLOAT or len(dims) != 4 or dims[1:] != [3, h, w]:
        raise ModelError(
            f"{path} input {inputs[0].name} is {dims} of type {tensor.elem_type};"
            f" the rewrite needs float32 [N, 3, {h}, {w}]"
        )
    image: onnx.ValueInfoProto = inputs[0]
    return image


def _reduce(
    op: str, src: str, dst: str, axes: list[int], opset: int
) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    if opset >= 18:
        axes_name = f"{dst}/axes"
        axes_tensor = numpy_helper.from_array(np.asarray(axes, dtype=np.int64), axes_name)
        return helper.make_node(op, [src, axes_name], [dst], name=dst, keepdims=1), [axes_tensor]
    return helper.make_node(op, [src], [dst], name=dst, axes=axes, keepdims=1), []


def _const(name: str, value: npt.ArrayLike, dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), _P + name)


def _node(op: str, inputs: list[str], output: str, **attrs: Any) -> onnx.NodeProto:
    return helper.make_node(op, inputs, [output], name=output, **attrs)


def _normalise_nodes(
    spec: ModelSpec, opset: int, model_input: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    norm = spec.normalisation
    consts = [
        _const("mean", np.reshape(norm.mean, (1, 1, 1, 3))),
        _const("std", np.reshape(norm.std, (1, 1, 1, 3))),
    ]
    nodes = [_node("Cast", [INPUT_NAME], _P + "pixels", to=TensorProto.FLOAT)]
    if norm.scale == "image_max":
        reduce_node, axes = _reduce("ReduceMax", _P + "pixels", _P + "peak", [1, 2, 3], opset)
        consts += [*axes, _const("floor", norm.max_floor)]
        nodes += [reduce_node, _node("Max", [_P + "peak", _P + "floor"], _P + "divisor")]
    else:
        consts.append(_const("divisor", 255.0))
    nodes += [
        _node("Div", [_P + "pixels", _P + "divisor"], _P + "unit"),
        _node("Sub", [_P + "unit", _P + "mean"], _P + "centred"),
        _node("Div", [_P + "centred", _P + "std"], _P + "nhwc"),
        # Named after the exported graph's input, so every original node stays as it was.
        _node("Transpose", [_P + "nhwc"], model_input, perm=[0, 3, 1, 2]),
    ]
    return nodes, consts


def _min_max_nodes(
    output: onnx.ValueInfoProto, opset: int, size: tuple[int, int]
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    dims = output.type.tensor_type.shape.dim
    channels = dims[1].dim_value if len(dims) == 4 and dims[1].HasField("dim_value") else 1
    if len(dims) not in (3, 4) or channels != 1:
        raise ModelError(
            f"mask output {output.name} must be [N, 1, H, W] or [N, H, W]; it has {len(dims)}"
            f" dimensions and {channels} channels"
        )
    consts = [_const("mask_shape", [-1, *size], np.int64), _const("mask_eps", _MASK_EPS)]
    nodes = [_node("Reshape", [output.name, _P + "mask_shape"], _P + "raw")]
    lo, lo_axes = _reduce("ReduceMin", _P + "raw", _P + "lo", [1, 2], opset)
    hi, hi_axes = _reduce("ReduceMax", _P + "raw", _P + "hi", [1, 2], opset)
    nodes += [
        lo,
        hi,
        _node("Sub", [_P + "raw", _P + "lo"], _P + "shifted"),
        _node("Sub", [_P + "hi", _P + "lo"], _P + "range"),
        _node("Max", [_P + "range", _P + "mask_eps"], _P + "span"),
        _node("Div", [_P + "shifted", _P + "span"], OUTPUT_NAME),
    ]
    return nodes, [*consts, *lo_axes, *hi_axes]


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes that no graph output depends on, then initializers nothing reads."""
    needed = {o.name for o in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
            needed.update(_subgraph_inputs(node))
    del graph.node[:]
    graph.node.extend(reversed(kept))
    used = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(used)


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    # If/Loop bodies may read outer tensors by name; keep whatever they mention.
    names: set[str] = set()
    for attr in node.attribute:
        subgraphs = [attr.g] if attr.HasField("g") else []
        for sub in [*subgraphs, *attr.graphs]:
            for inner in sub.node:
                names.update(inner.input)
    return names


def _set_metadata(model: onnx.ModelProto, entries: dict[str, str]) -> None:
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)


def _save_atomically(model: onnx.ModelProto, dst: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    os.close(fd)
    try:
        onnx.save(model, tmp_name)
        os.replace(tmp_name, dst)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
