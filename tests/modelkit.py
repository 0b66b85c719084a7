"""Tiny ONNX models built with onnx.helper, shaped like the real ones, for tests.

``u2net_like`` mimics U²-Net-p's export: input ``input.1`` float [1, 3, H, W], a down-and-up path
whose Resize takes its target size from ``Shape`` ops (as PyTorch exports it), seven sigmoid
outputs of which the first is the mask. Weights are seeded, so every build is the same model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pipeline.models import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, Normalisation

INPUT = "input.1"
TEST_MODEL = "u2netp"
"""The model every test runs (4.6 MB; the default model, u2net, is 176 MB): tests/conftest.py
pins CLIPLINE_MODEL to it for the session, tests/distkit.py for every cluster."""


def tiny_spec(
    size: tuple[int, int] = (32, 32), *, filename: str = "tiny.onnx", sha256: str | None = None
) -> ModelSpec:
    return ModelSpec(
        name="tiny",
        filename=filename,
        input_size=size,
        normalisation=Normalisation(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        sha256=sha256,
    )


def u2net_like(
    path: Path,
    size: tuple[int, int] = (32, 32),
    *,
    batch: int | str = 1,
    opset: int = 11,
    seed: int = 0,
    side_outputs: int = 6,
    bake_batch_into_reshape: bool = False,
    mask_channels: int = 1,
) -> Path:
    """Write the model to ``path``. ``bake_batch_into_reshape`` adds a Reshape to a constant
    [1, ...] shape, the kind of export bug that only shows at batch > 1."""
    rng = np.random.default_rng(seed)
    h, w = size
    inits: list[onnx.TensorProto] = []

    def weight(name: str, shape: tuple[int, ...]) -> str:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name))
        return name

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    nodes = [
        helper.make_node(
            "Conv",
            [INPUT, weight("w1", (4, 3, 3, 3)), weight("b1", (4,))],
            ["c1"],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node(
            "Conv",
            ["p1", weight("w2", (4, 4, 3, 3)), weight("b2", (4,))],
            ["c2"],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["c2"], ["r2"]),
        # Resize r2 up to r1's spatial size, the size computed from Shape like PyTorch does.
        helper.make_node("Shape", ["r2"], ["s2"]),
        helper.make_node("Shape", ["r1"], ["s1"]),
        helper.make_node(
            "Slice",
            [
                "s2",
                const("z", np.array([0], np.int64)),
                const("two", np.array([2], np.int64)),
                const("ax", np.array([0], np.int64)),
            ],
            ["nc"],
        ),
        helper.make_node(
            "Slice", ["s1", "two", const("four", np.array([4], np.int64)), "ax"], ["hw"]
        ),
        helper.make_node("Concat", ["nc", "hw"], ["sizes"], axis=0),
    ]
    if opset >= 13:
        resize_inputs = ["r2", "", "", "sizes"]
    else:
        resize_inputs = [
            "r2",
            const("roi", np.array([], np.float32)),
            const("scales", np.array([], np.float32)),
            "sizes",
        ]
    nodes += [
        helper.make_node("Resize", resize_inputs, ["u"], mode="linear"),
        helper.make_node("Concat", ["u", "r1"], ["cat"], axis=1),
        helper.make_node(
            "Conv",
            ["cat", weight("w3", (mask_channels, 8, 1, 1)), weight("b3", (mask_channels,))],
            ["d0"],
        ),
    ]
    mask_logits = "d0"
    if bake_batch_into_reshape:
        shape = const("baked", np.array([1, 1, h, w], np.int64))
        nodes.append(helper.make_node("Reshape", ["d0", shape], ["d0_baked"]))
        mask_logits = "d0_baked"
    nodes.append(helper.make_node("Sigmoid", [mask_logits], ["out0"]))
    outputs = [
        helper.make_tensor_value_info("out0", TensorProto.FLOAT, [batch, mask_channels, h, w])
    ]
    for i in range(1, side_outputs + 1):
        nodes += [
            helper.make_node("Conv", ["r1", weight(f"ws{i}", (1, 4, 1, 1))], [f"side{i}"]),
            helper.make_node("Sigmoid", [f"side{i}"], [f"out{i}"]),
        ]
        outputs.append(
            helper.make_tensor_value_info(f"out{i}", TensorProto.FLOAT, [batch, 1, h, w])
        )
    graph = helper.make_graph(
        nodes,
        "u2net_like",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [batch, 3, h, w])],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset < 18 else 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def uint8_identity(path: Path, size: tuple[int, int] = (8, 8), *, postprocess: str | None) -> Path:
    """A uint8 NHWC model whose mask is the red channel / 255, as a hand-made "uint8 form";
    ``postprocess`` is written as the ``clipline.postprocess`` metadata when given."""
    h, w = size
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Slice", ["f", "s0", "s1", "s3"], ["red"]),
        helper.make_node("Div", ["red", "k"], ["scaled"]),
        helper.make_node("Reshape", ["scaled", "shape"], ["mask"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([0], np.int64), "s0"),
        numpy_helper.from_array(np.array([1], np.int64), "s1"),
        numpy_helper.from_array(np.array([3], np.int64), "s3"),
        numpy_helper.from_array(np.array(255.0, np.float32), "k"),
        numpy_helper.from_array(np.array([-1, h, w], np.int64), "shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "uint8_identity",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", h, w, 3])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", h, w])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if postprocess is not None:
        model.metadata_props.add(key="clipline.postprocess", value=postprocess)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def rembg_reference(images: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """rembg's normalisation, written out the way rembg does it (float64, per channel)."""
    norm = spec.normalisation
    out = np.zeros((len(images), 3, *images.shape[1:3]), dtype=np.float64)
    for i, image in enumerate(images):
        scaled = image / max(np.max(image), 1e-6)
        for c in range(3):
            out[i, c] = (scaled[:, :, c] - norm.mean[c]) / norm.std[c]
    return out.astype(np.float32)
